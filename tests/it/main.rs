//! Integration tests: the real `runner` binary in temporary directories, and library-level
//! training checks with tiny models.

mod common;
mod compress;

mod bad_input;
mod bench;
mod compare;
mod configs;
mod explain;
mod faults;
mod fuzz;
mod learning;
mod objectives;
mod postgres;
mod reliability;
mod run_dir;
mod serve;
mod sweep;
mod techniques;
mod text;
