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
    wrote: Cell<bool>,
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

/// One write transaction over `trees`: `f` gets a [`TransactionalTree`] for each, in order,
/// and returns its result and, per tree, whether it wrote.
fn run<R, E>(
    trees: &[&Tree],
    f: impl for<'t> FnOnce(Vec<TransactionalTree<'t>>) -> (TxResult<R, E>, Vec<bool>),
) -> std::result::Result<R, TransactionError<E>> {
    let db = &trees[0].db;
    let tx = db.begin_write().map_err(TransactionError::Storage)?;
    let (r, changed) = {
        let mut tables = Vec::with_capacity(trees.len());
        for t in trees {
            let table = tx
                .open_table(def(t.name))
                .map_err(|e| TransactionError::Storage(e.into()))?;
            tables.push(TransactionalTree {
                table: RefCell::new(table),
                wrote: Cell::new(false),
            });
        }
        f(tables)
    };
    match r {
        Ok(r) => {
            db.commit(tx).map_err(TransactionError::Storage)?;
            for (t, c) in trees.iter().zip(changed) {
                if c {
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
        run(&[self], |mut v| {
            let t = v.remove(0);
            let r = f(&t);
            (r, vec![t.wrote.get()])
        })
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
            let view = (next(), next(), next());
            let r = f(&view);
            (
                r,
                vec![view.0.wrote.get(), view.1.wrote.get(), view.2.wrote.get()],
            )
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
            let view = (next(), next(), next(), next(), next());
            let r = f(&view);
            let wrote = vec![
                view.0.wrote.get(),
                view.1.wrote.get(),
                view.2.wrote.get(),
                view.3.wrote.get(),
                view.4.wrote.get(),
            ];
            (r, wrote)
        })
    }
}
