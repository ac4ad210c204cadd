//! [`Shared`]: a copy-on-write table, so that a snapshot can hold the state cheaply.
//!
//! Each table of the [`Db`](super::Db) sits behind an [`Arc`]. Cloning the `Db` (a snapshot
//! builder taking its view, a transaction saving the state to roll back to) only bumps the
//! reference counts. Mutable access goes through [`Arc::make_mut`]: a table held by nobody
//! else is changed in place, and one still held by a snapshot is copied first, once, so the
//! snapshot keeps the state it was taken at while writes go on. Tables keyed by node or by
//! service name nest a `Shared` map per key, and the KV entries and the per-node maps of
//! services and checks hold each record as a `Shared` too, so that such a copy duplicates
//! keys and pointers (the outer map's, plus those of the one inner map being written), never
//! the records.
//!
//! Reads deref to the table for free. Any other `&mut` access may copy, so write paths look
//! records up with shared references first and take `&mut` only to change something
//! (`get_mut` and `remove` of a missing key copy nothing).
//!
//! The serde encodings are those of the table itself, so the snapshot and JSON forms are
//! unchanged.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// A copy-on-write value: cheap to clone, copied on the first write while shared.
#[derive(Default, PartialEq, Eq)]
pub struct Shared<T>(Arc<T>);

impl<T> Shared<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Shared(Arc::new(value))
    }

    /// Whether `a` and `b` are the same allocation (nothing was copied between them).
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Clone> DerefMut for Shared<T> {
    /// Copies the value first if anyone else still holds it.
    fn deref_mut(&mut self) -> &mut T {
        Arc::make_mut(&mut self.0)
    }
}

/// `get_mut` and `remove` that copy a shared map only when the key is there: shadowing the
/// map's own, so that a write path looking up or removing a missing key copies nothing.
impl<K: Ord + Clone, V: Clone> Shared<BTreeMap<K, V>> {
    /// The value of `key` to change, if present.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        if !self.contains_key(key) {
            return None;
        }
        Arc::make_mut(&mut self.0).get_mut(key)
    }

    /// Removes `key`, returning its value if it was present.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        if !self.contains_key(key) {
            return None;
        }
        Arc::make_mut(&mut self.0).remove(key)
    }
}

impl<T> From<T> for Shared<T> {
    fn from(value: T) -> Self {
        Shared::new(value)
    }
}

impl<'a, T> IntoIterator for &'a Shared<T>
where
    &'a T: IntoIterator,
{
    type Item = <&'a T as IntoIterator>::Item;
    type IntoIter = <&'a T as IntoIterator>::IntoIter;

    fn into_iter(self) -> Self::IntoIter {
        self.0.as_ref().into_iter()
    }
}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Serialize> Serialize for Shared<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.as_ref().serialize(s)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Shared::new)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_keeps_its_state_when_the_original_is_written() {
        let mut live: Shared<BTreeMap<u32, Shared<Vec<u32>>>> = Shared::default();
        live.entry(1).or_default().push(10);
        live.entry(2).or_default().push(20);
        let held = live.clone();
        assert!(Shared::ptr_eq(&live, &held));

        live.get_mut(&1).unwrap().push(11);
        assert!(!Shared::ptr_eq(&live, &held));
        assert_eq!(*held[&1], vec![10]);
        assert_eq!(*live[&1], vec![10, 11]);
        // The inner value not written is still the same allocation in both.
        assert!(Shared::ptr_eq(&live[&2], &held[&2]));
    }

    #[test]
    fn missing_keys_copy_nothing() {
        let mut live: Shared<BTreeMap<u32, u32>> = Shared::new(BTreeMap::from([(1, 1)]));
        let held = live.clone();
        assert_eq!(live.remove(&2), None);
        assert_eq!(live.get_mut(&2), None);
        assert!(Shared::ptr_eq(&live, &held));
        assert_eq!(live.remove(&1), Some(1));
        assert!(!Shared::ptr_eq(&live, &held));
        assert_eq!(held.get(&1), Some(&1));
    }

    #[test]
    fn unshared_writes_do_not_copy() {
        let mut live: Shared<Vec<u32>> = Shared::new(vec![1]);
        let before: *const Vec<u32> = &*live;
        live.push(2);
        assert_eq!(before, &*live as *const Vec<u32>);
    }

    #[test]
    fn encodes_as_the_value_itself() {
        let mut m = BTreeMap::new();
        m.insert("a".to_string(), vec![1u8, 2]);
        let shared = Shared::new(m.clone());
        assert_eq!(
            postcard::to_stdvec(&shared).unwrap(),
            postcard::to_stdvec(&m).unwrap()
        );
        assert_eq!(
            serde_json::to_string(&shared).unwrap(),
            serde_json::to_string(&m).unwrap()
        );
        let back: Shared<BTreeMap<String, Vec<u8>>> =
            postcard::from_bytes(&postcard::to_stdvec(&m).unwrap()).unwrap();
        assert_eq!(*back, m);
    }
}
