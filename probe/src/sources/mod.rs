//! Producers of measurements. Each source fills its part of a batch when the interval closes:
//! live capture (`capture`, pnet), the relay of the site router's NetFlow export (`netflow`)
//! and of its or the switches' sFlow (`sflow`),
//! and `rie_flow::simulate` for demos, load tests and end-to-end tests. Link checks come with
//! their issue.

pub mod capture;
pub mod netflow;
pub mod packet_diag;
pub mod sflow;
