//! Transactions over several trees: one redb write transaction, committed when the
//! closure succeeds and abandoned when it fails.

use std::cell::{Cell, RefCell};

use redb::ReadableTable;

use super::{def, Error, Result, Tree, Value};

/// Why a transaction's closure stopped: its own error (the transaction is abandoned), or
/// the engine's.
#[derive(Debug)]
pub enum ConflictableTransactionError<E> {
    /// The closure's own error.
    Abort(E),
    /// The engine failed.
    Storage(Error),
}

impl<E> From<Error> for ConflictableTransactionError<E> {
    fn from(e: Error) -> Self {
        ConflictableTransactionError::Storage(e)
    }
}

/// Why a transaction did not commit.
#[derive(Debug)]
pub enum TransactionError<E> {
    /// The closure's own error.
    Abort(E),
    /// The engine failed.
    Storage(Error),
}

/// A tree inside a transaction.
pub struct TransactionalTree<'t> {
    table: RefCell<redb::Table<'t, &'static [u8], &'static [u8]>>,
    /// Whether this tree was written (its watchers are told after the commit); kept by
    /// [`run`], which outlives the view.
    wrote: &'t Cell<bool>,
}

impl TransactionalTree<'_> {
    /// The value under `key`, as this transaction sees it.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>> {
        Ok(self
            .table
            .borrow()
            .get(key.as_ref())?
            .map(|v| v.value().to_vec()))
    }

    /// Set `key` to `value`.
    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        self.wrote.set(true);
        self.table
            .borrow_mut()
            .insert(key.as_ref(), value.as_ref())?;
        Ok(())
    }

    /// Remove `key`; whether it had a value.
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        self.wrote.set(true);
        Ok(self.table.borrow_mut().remove(key.as_ref())?.is_some())
    }
}

type TxResult<R, E> = std::result::Result<R, ConflictableTransactionError<E>>;

/// Trees that commit together: one tree, or a tuple of them.
pub trait Transactional {
    /// What the closure is given: a [`TransactionalTree`] per tree, in the same shape.
    type View<'t>;

    /// Run `f` in one write transaction over these trees and commit what it wrote, or
    /// nothing when it fails.
    fn transaction<R, E>(
        &self,
        f: impl FnOnce(&Self::View<'_>) -> TxResult<R, E>,
    ) -> std::result::Result<R, TransactionError<E>>;
}

/// One write transaction over `trees`: `f` gets a [`TransactionalTree`] for each, in order.
fn run<R, E>(
    trees: &[&Tree],
    f: impl for<'t> FnOnce(Vec<TransactionalTree<'t>>) -> TxResult<R, E>,
) -> std::result::Result<R, TransactionError<E>> {
    let db = &trees[0].db;
    let wrote: Vec<Cell<bool>> = trees.iter().map(|_| Cell::new(false)).collect();
    let tx = db.begin_write().map_err(TransactionError::Storage)?;
    let r = {
        let mut tables = Vec::with_capacity(trees.len());
        for (t, wrote) in trees.iter().zip(&wrote) {
            let table = tx
                .open_table(def(t.name))
                .map_err(|e| TransactionError::Storage(e.into()))?;
            tables.push(TransactionalTree {
                table: RefCell::new(table),
                wrote,
            });
        }
        f(tables)
    };
    match r {
        Ok(r) => {
            db.commit(tx).map_err(TransactionError::Storage)?;
            for (t, w) in trees.iter().zip(&wrote) {
                if w.get() {
                    db.changed(t.name);
                }
            }
            Ok(r)
        }
        Err(e) => {
            if let Err(a) = tx.abort() {
                tracing::warn!("abandoning a metadata transaction: {a}");
            }
            Err(match e {
                ConflictableTransactionError::Abort(e) => TransactionError::Abort(e),
                ConflictableTransactionError::Storage(e) => TransactionError::Storage(e),
            })
        }
    }
}

impl Transactional for Tree {
    type View<'t> = TransactionalTree<'t>;
    fn transaction<R, E>(
        &self,
        f: impl FnOnce(&Self::View<'_>) -> TxResult<R, E>,
    ) -> std::result::Result<R, TransactionError<E>> {
        run(&[self], |mut v| f(&v.remove(0)))
    }
}

impl Transactional for (&Tree, &Tree, &Tree) {
    type View<'t> = (
        TransactionalTree<'t>,
        TransactionalTree<'t>,
        TransactionalTree<'t>,
    );
    fn transaction<R, E>(
        &self,
        f: impl FnOnce(&Self::View<'_>) -> TxResult<R, E>,
    ) -> std::result::Result<R, TransactionError<E>> {
        run(&[self.0, self.1, self.2], |v| {
            let mut v = v.into_iter();
            let mut next = || v.next().expect("one table per tree");
            f(&(next(), next(), next()))
        })
    }
}

impl Transactional for (&Tree, &Tree, &Tree, &Tree, &Tree) {
    type View<'t> = (
        TransactionalTree<'t>,
        TransactionalTree<'t>,
        TransactionalTree<'t>,
        TransactionalTree<'t>,
        TransactionalTree<'t>,
    );
    fn transaction<R, E>(
        &self,
        f: impl FnOnce(&Self::View<'_>) -> TxResult<R, E>,
    ) -> std::result::Result<R, TransactionError<E>> {
        run(&[self.0, self.1, self.2, self.3, self.4], |v| {
            let mut v = v.into_iter();
            let mut next = || v.next().expect("one table per tree");
            f(&(next(), next(), next(), next(), next()))
        })
    }
}
