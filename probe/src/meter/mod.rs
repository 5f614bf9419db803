//! Flow metering: frames are parsed into flow keys (`packet`), counted in `rie-flow`'s bounded
//! flow table (`rie_flow::flow_table`, active, inactive and TCP FIN/RST expiry), and read from
//! pcap/pcapng files for offline replay (`pcap`). Live capture (pnet, AF_PACKET) feeds the same
//! table.

pub mod packet;
pub mod pcap;
