//! Runs of reads in one read transaction.

use std::cell::RefCell;
use std::ops::Bound;
use std::rc::Rc;

use redb::{ReadableDatabase, ReadableTable};

use super::{def, prefix_end, Result, Tree, Value};

impl super::Db {
    /// A consistent view of every tree as of now, for a run of reads (one transaction
    /// instead of one per read).
    pub fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            tx: self.inner.db.begin_read()?,
            open: RefCell::new(Vec::new()),
        })
    }
}

/// Reads from one read transaction (see [`super::Db::snapshot`]).
pub struct Snapshot {
    tx: redb::ReadTransaction,
    open: RefCell<Vec<(&'static str, Rc<ReadTable>)>>,
}

type ReadTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

impl Snapshot {
    fn table(&self, tree: &Tree) -> Result<Rc<ReadTable>> {
        if let Some((_, t)) = self.open.borrow().iter().find(|(n, _)| *n == tree.name) {
            return Ok(t.clone());
        }
        let t = Rc::new(self.tx.open_table(def(tree.name))?);
        self.open.borrow_mut().push((tree.name, t.clone()));
        Ok(t)
    }

    /// `tree`'s value under `key`, as of the snapshot.
    pub fn get(&self, tree: &Tree, key: impl AsRef<[u8]>) -> Result<Option<Value>> {
        Ok(self
            .table(tree)?
            .get(key.as_ref())?
            .map(|v| v.value().to_vec()))
    }

    /// `f` over each entry of `tree` whose key starts with `prefix`, in key order, without
    /// copying them; stops early when `f` returns false.
    pub fn scan_prefix(
        &self,
        tree: &Tree,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<()> {
        let t = self.table(tree)?;
        let end = prefix_end(prefix);
        let hi = end.as_ref().map(Vec::as_slice);
        for item in t.range((Bound::Included(prefix), hi))? {
            let (k, v) = item?;
            if !f(k.value(), v.value()) {
                break;
            }
        }
        Ok(())
    }
}
