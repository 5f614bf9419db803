//! NetFlow v9/IPFIX templates kept in the store (`netflow_templates` table), behind
//! `netflow_parser`'s [`TemplateStore`] hook, so that the first data after a collector restart
//! decodes without waiting for the exporter's next template announce (often minutes away).
//!
//! Design constraints: exporters re-announce their templates every few seconds to minutes,
//! 14,000 of them; writing each announce would cost one fsync each. So the store is
//! write-behind: the parser reads and writes an in-memory map, only a *changed* template is
//! marked dirty, and dirty entries travel with the NetFlow lane's periodic flush to the commit
//! stage ([`TemplateChange`]s), in the same group as the traffic they helped decode.
//!
//! With several collectors on one database ([`TemplateCache::read_through`]), a template this
//! collector does not hold is looked up in the store on a miss: an exporter moved from another
//! collector (or a load balancer's choice) decodes here at once from the template the other
//! one committed. A miss is asked again at most every [`MISS_RETRY`], so data of a template
//! nobody announced does not query the database for every datagram.
//!
//! May import `crate::store` (rows and the read side) and `crate::metrics`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::store::{Reader, TemplateChange};
use netflow_parser::template_store::{
    TemplateKind, TemplateStore, TemplateStoreError, TemplateStoreKey,
};

fn kind_code(k: TemplateKind) -> Option<i64> {
    Some(match k {
        TemplateKind::V9Data => 0,
        TemplateKind::V9Options => 1,
        TemplateKind::IpfixData => 2,
        TemplateKind::IpfixOptions => 3,
        TemplateKind::IpfixV9Data => 4,
        TemplateKind::IpfixV9Options => 5,
        // A kind added by a newer crate: kept in memory only.
        _ => return None,
    })
}

fn kind_of(code: i64) -> Option<TemplateKind> {
    Some(match code {
        0 => TemplateKind::V9Data,
        1 => TemplateKind::V9Options,
        2 => TemplateKind::IpfixData,
        3 => TemplateKind::IpfixOptions,
        4 => TemplateKind::IpfixV9Data,
        5 => TemplateKind::IpfixV9Options,
        _ => return None,
    })
}

pub type Dirty = HashMap<TemplateStoreKey, Option<Vec<u8>>>;

/// How long a key the store did not have is not asked again.
pub const MISS_RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct Inner {
    current: HashMap<TemplateStoreKey, Vec<u8>>,
    /// Changes not yet committed: `None` = removed.
    dirty: Dirty,
    /// Keys the shared store did not have, and when it was asked.
    misses: HashMap<TemplateStoreKey, Instant>,
}

/// The shared store a miss is read from, and the count of templates found there.
struct Shared {
    reader: Arc<Reader>,
    found: prometheus::IntCounter,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

/// The template map the parser reads through and writes to.
#[derive(Debug, Default)]
pub struct TemplateCache {
    inner: Mutex<Inner>,
    shared: Option<Shared>,
}

impl TemplateCache {
    /// The cache over the templates the store had (see `store::Loaded::templates`).
    pub fn load(persisted: &[TemplateChange]) -> Arc<Self> {
        let mut current = HashMap::new();
        for t in persisted {
            if let (Some(kind), Ok(id), Some(body)) =
                (kind_of(t.kind), u16::try_from(t.template_id), &t.body)
            {
                current.insert(
                    TemplateStoreKey::new(t.scope.clone(), kind, id),
                    body.clone(),
                );
            }
        }
        Arc::new(Self {
            inner: Mutex::new(Inner {
                current,
                ..Inner::default()
            }),
            shared: None,
        })
    }

    /// Like [`TemplateCache::load`], reading a miss from `reader` (a database other
    /// collectors write too); `found` counts the templates found there.
    pub fn read_through(
        persisted: &[TemplateChange],
        reader: Arc<Reader>,
        found: prometheus::IntCounter,
    ) -> Arc<Self> {
        let mut cache = Arc::into_inner(Self::load(persisted)).unwrap_or_default();
        cache.shared = Some(Shared { reader, found });
        Arc::new(cache)
    }

    /// A key this collector does not hold, from the shared store (decode threads only: the
    /// PostgreSQL read blocks on its runtime).
    fn fetch(&self, key: &TemplateStoreKey) -> Result<Option<Vec<u8>>, TemplateStoreError> {
        let (Some(shared), Some(kind)) = (&self.shared, kind_code(key.kind)) else {
            return Ok(None);
        };
        {
            let mut inner = self.lock();
            let now = Instant::now();
            if inner
                .misses
                .get(key)
                .is_some_and(|t| now.duration_since(*t) < MISS_RETRY)
            {
                return Ok(None);
            }
            inner.misses.insert(key.clone(), now);
        }
        let body = shared
            .reader
            .netflow_template(&key.scope, kind, i64::from(key.template_id))
            .map_err(|e| TemplateStoreError::Backend(Box::new(e)))?;
        if let Some(b) = &body {
            shared.found.inc();
            let mut inner = self.lock();
            inner.misses.remove(key);
            // Not dirty: the store already has it.
            inner
                .current
                .entry(key.clone())
                .or_insert_with(|| b.clone());
        }
        Ok(body)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Templates known (persisted or about to be).
    pub fn len(&self) -> usize {
        self.lock().current.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the changes to commit.
    pub fn take_dirty(&self) -> Dirty {
        std::mem::take(&mut self.lock().dirty)
    }

    /// Puts back changes whose commit failed, unless a newer change came meanwhile.
    pub fn restore_dirty(&self, dirty: Dirty) {
        let mut inner = self.lock();
        for (k, v) in dirty {
            inner.dirty.entry(k).or_insert(v);
        }
    }

    /// The store rows of `dirty` (kinds a newer parser added stay in memory only).
    pub fn changes(dirty: &Dirty) -> Vec<TemplateChange> {
        dirty
            .iter()
            .filter_map(|(k, v)| {
                Some(TemplateChange {
                    scope: k.scope.to_string(),
                    kind: kind_code(k.kind)?,
                    template_id: i64::from(k.template_id),
                    body: v.clone(),
                })
            })
            .collect()
    }
}

impl TemplateStore for TemplateCache {
    fn get(&self, key: &TemplateStoreKey) -> Result<Option<Vec<u8>>, TemplateStoreError> {
        if let Some(v) = self.lock().current.get(key).cloned() {
            return Ok(Some(v));
        }
        self.fetch(key)
    }

    fn put(&self, key: &TemplateStoreKey, value: &[u8]) -> Result<(), TemplateStoreError> {
        let mut inner = self.lock();
        // Re-announces of an unchanged template (the common case) cost no write.
        if inner.current.get(key).is_some_and(|v| v == value) {
            return Ok(());
        }
        inner.current.insert(key.clone(), value.to_vec());
        inner.dirty.insert(key.clone(), Some(value.to_vec()));
        Ok(())
    }

    fn remove(&self, key: &TemplateStoreKey) -> Result<(), TemplateStoreError> {
        let mut inner = self.lock();
        if inner.current.remove(key).is_some() {
            inner.dirty.insert(key.clone(), None);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SqliteStore, Store, WriteSet};

    fn commit(store: &mut SqliteStore, dirty: &Dirty) {
        store
            .write(&WriteSet {
                templates: TemplateCache::changes(dirty),
                now_ms: 1,
                ..WriteSet::default()
            })
            .unwrap();
    }

    #[test]
    fn changes_survive_a_reload_and_repeats_cost_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
        let s = TemplateCache::load(&store.load().unwrap().templates);
        let k = TemplateStoreKey::new("v9:10.0.0.1:0/0", TemplateKind::V9Data, 256);
        let k2 = TemplateStoreKey::new("v9:10.0.0.1:0/0", TemplateKind::V9Data, 257);
        s.put(&k, b"abc").unwrap();
        s.put(&k2, b"x").unwrap();
        let dirty = s.take_dirty();
        assert_eq!(dirty.len(), 2);
        commit(&mut store, &dirty);
        s.put(&k, b"abc").unwrap();
        assert!(
            s.take_dirty().is_empty(),
            "an unchanged re-announce is not rewritten"
        );
        s.remove(&k2).unwrap();
        let dirty = s.take_dirty();
        commit(&mut store, &dirty);
        let again = TemplateCache::load(&store.load().unwrap().templates);
        assert_eq!(again.len(), 1);
        assert_eq!(again.get(&k).unwrap().as_deref(), Some(&b"abc"[..]));
        assert_eq!(again.get(&k2).unwrap(), None);
    }
}
