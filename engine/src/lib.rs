//! clgemm's compiled core: schedule space, search strategies, simulator, telemetry.
//!
//! Pure logic lives in modules with no Python in them (tested by `cargo test`); `py` holds
//! the pyo3 bindings and is the only place that knows about Python.

pub mod expr;
mod py;
pub mod recorded;
pub mod rng;
pub mod simulator;
pub mod space;
pub mod strategies;
pub mod telemetry;
