//! Flow table and TCP reassembly.
use crate::counters;
counters! {
    pub struct FlowStats { flows_created }
}
