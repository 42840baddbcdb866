//! The task's data: vocabulary and generator (pure, no burn), datasets on disk, and the
//! batcher that turns examples into tensors.

pub mod augment;
pub mod batcher;
pub mod dataset;
pub mod task;
pub mod vocab;

pub use task::Example;
pub use vocab::Vocab;
