//! Producers of measurements. Each source fills its part of a batch when the interval closes.
//! Live capture (`pnet`), NetFlow relay and link checks come with their own issues; today the
//! only source is `simulate`, for demos, load tests and end-to-end tests.

pub mod capture;
pub mod simulate;
