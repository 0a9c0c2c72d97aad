//! Herald end to end, through the real binary and real backends.

mod support;

mod cli;
mod demo;
mod email;
mod kill;
mod pg_restart;
mod races;
mod redis_restart;
mod scale_out;
mod serve;
