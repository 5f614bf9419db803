//! `[store]` of the collector config file: the commit stage's queue and group size, and
//! `[store.retention]` (`retention`). Validated here; `crate::config` only assembles.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Capacity of the channel from the inputs to the commit stage; when full, connections
    /// stop reading (backpressure reaches the probes through TCP).
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Most batches committed in one transaction (one fsync).
    #[serde(default = "default_commit_max")]
    pub commit_max_batches: usize,
    /// `[store.retention]`: how long minute, five-minute, hour and day rollups are kept.
    #[serde(default)]
    pub retention: crate::store::retention::RetentionConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            queue: default_queue(),
            commit_max_batches: default_commit_max(),
            retention: crate::store::retention::RetentionConfig::default(),
        }
    }
}

fn default_queue() -> usize {
    4096
}

fn default_commit_max() -> usize {
    2048
}

impl StoreConfig {
    /// Checks values that parse but cannot work; `Err((key, message))` names the key in the
    /// collector's config file and a right value.
    ///
    /// # Errors
    /// The first key at fault.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.queue == 0 || self.commit_max_batches == 0 {
            return Err((
                "store.queue",
                "store.queue and store.commit_max_batches must be at least 1; e.g. 4096 and 2048"
                    .into(),
            ));
        }
        self.retention.validate()?;
        Ok(())
    }
}
