//! Flow metering: frames are parsed into flow keys (`packet`), counted in a bounded flow table
//! with active, inactive and TCP FIN/RST expiry (`flow_table`), and read from pcap/pcapng files
//! for offline replay (`pcap`). Live capture (pnet, AF_PACKET) feeds the same table.

pub mod aggregate;
pub mod flow_table;
pub mod packet;
pub mod pcap;
