//! NetFlow v9/IPFIX templates kept in SQLite (`netflow_templates`), behind
//! `netflow_parser`'s [`TemplateStore`] hook, so that the first data after a collector restart
//! decodes without waiting for the exporter's next template announce (often minutes away).
//!
//! Design constraints: exporters re-announce their templates every few seconds to minutes,
//! 14,000 of them; writing each announce would cost one fsync each. So the store is
//! write-behind: the parser reads and writes an in-memory map, only a *changed* template is
//! marked dirty, and dirty entries are written in the NetFlow input's periodic commit, in the
//! same transaction as the traffic they helped decode.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use netflow_parser::template_store::{
    TemplateKind, TemplateStore, TemplateStoreError, TemplateStoreKey,
};
use rusqlite::{params, Connection, Transaction};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS netflow_templates(
    scope       TEXT NOT NULL,     -- exporter scope, e.g. 'v9:10.0.1.1:0/0' (address/domain)
    kind        INTEGER NOT NULL,  -- see kind_code
    template_id INTEGER NOT NULL,
    body        BLOB NOT NULL,     -- netflow_parser's template wire format
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (scope, kind, template_id)
) WITHOUT ROWID;
";

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

type Dirty = HashMap<TemplateStoreKey, Option<Vec<u8>>>;

#[derive(Debug, Default)]
struct Inner {
    current: HashMap<TemplateStoreKey, Vec<u8>>,
    /// Changes not yet committed: `None` = removed.
    dirty: Dirty,
}

/// The template map the parser reads through and writes to.
#[derive(Debug, Default)]
pub struct SqliteTemplates {
    inner: Mutex<Inner>,
}

impl SqliteTemplates {
    /// Creates the table if needed and loads every persisted template.
    ///
    /// # Errors
    /// Database errors.
    pub fn load(conn: &Connection) -> Result<Arc<Self>, rusqlite::Error> {
        conn.execute_batch(SCHEMA)?;
        let mut stmt =
            conn.prepare("SELECT scope, kind, template_id, body FROM netflow_templates")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Vec<u8>>(3)?,
            ))
        })?;
        let mut current = HashMap::new();
        for row in rows {
            let (scope, kind, id, body) = row?;
            if let (Some(kind), Ok(id)) = (kind_of(kind), u16::try_from(id)) {
                current.insert(TemplateStoreKey::new(scope, kind, id), body);
            }
        }
        Ok(Arc::new(Self {
            inner: Mutex::new(Inner {
                current,
                dirty: HashMap::new(),
            }),
        }))
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

    /// Writes `dirty` in `tx`.
    ///
    /// # Errors
    /// Database errors (the caller rolls back and restores the changes).
    pub fn write(tx: &Transaction<'_>, dirty: &Dirty, now_ms: i64) -> Result<(), rusqlite::Error> {
        let mut put = tx.prepare_cached(
            "INSERT INTO netflow_templates(scope, kind, template_id, body, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(scope, kind, template_id) DO UPDATE SET body = excluded.body, updated_ms = excluded.updated_ms",
        )?;
        let mut del = tx.prepare_cached(
            "DELETE FROM netflow_templates WHERE scope = ?1 AND kind = ?2 AND template_id = ?3",
        )?;
        for (k, v) in dirty {
            let Some(kind) = kind_code(k.kind) else {
                continue;
            };
            match v {
                Some(body) => put.execute(params![&*k.scope, kind, k.template_id, body, now_ms])?,
                None => del.execute(params![&*k.scope, kind, k.template_id])?,
            };
        }
        Ok(())
    }
}

impl TemplateStore for SqliteTemplates {
    fn get(&self, key: &TemplateStoreKey) -> Result<Option<Vec<u8>>, TemplateStoreError> {
        Ok(self.lock().current.get(key).cloned())
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

    #[test]
    fn changes_survive_a_reload_and_repeats_cost_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::store::open(&dir.path().join("t.db")).unwrap();
        let s = SqliteTemplates::load(&conn).unwrap();
        let k = TemplateStoreKey::new("v9:10.0.0.1:0/0", TemplateKind::V9Data, 256);
        let k2 = TemplateStoreKey::new("v9:10.0.0.1:0/0", TemplateKind::V9Data, 257);
        s.put(&k, b"abc").unwrap();
        s.put(&k2, b"x").unwrap();
        let dirty = s.take_dirty();
        assert_eq!(dirty.len(), 2);
        let tx = conn.transaction().unwrap();
        SqliteTemplates::write(&tx, &dirty, 1).unwrap();
        tx.commit().unwrap();
        s.put(&k, b"abc").unwrap();
        assert!(
            s.take_dirty().is_empty(),
            "an unchanged re-announce is not rewritten"
        );
        s.remove(&k2).unwrap();
        let dirty = s.take_dirty();
        let tx = conn.transaction().unwrap();
        SqliteTemplates::write(&tx, &dirty, 2).unwrap();
        tx.commit().unwrap();
        let again = SqliteTemplates::load(&conn).unwrap();
        assert_eq!(again.get(&k).unwrap().as_deref(), Some(&b"abc"[..]));
        assert_eq!(again.get(&k2).unwrap(), None);
    }
}
