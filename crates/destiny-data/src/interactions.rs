//! A table of user-item interactions with interned string ids.

use foldhash::fast::FixedState;
use hashbrown::HashTable;
use std::hash::BuildHasher;

/// String ids interned to dense numbers in order of first appearance. Each id is stored
/// once (the table holds numbers, hashed by the id they stand for), and integer ids, as a
/// Parquet file holds them, have a table of their own, so that no string is made for an id
/// already seen.
#[derive(Debug, Clone, Default)]
pub struct IdMap {
    ids: Vec<String>,
    positions: HashTable<u32>,
    integers: HashTable<(i64, u32)>,
}

/// The ids' hash: fast, and fixed so that a run is reproducible.
const HASHER: FixedState = FixedState::with_seed(0x1D5);

impl PartialEq for IdMap {
    fn eq(&self, other: &Self) -> bool {
        self.ids == other.ids
    }
}

impl IdMap {
    /// The number of `id`, adding it when new.
    pub fn intern(&mut self, id: &str) -> u32 {
        let hash = HASHER.hash_one(id);
        let ids = &self.ids;
        if let Some(&p) = self.positions.find(hash, |&p| ids[p as usize] == id) {
            return p;
        }
        self.add(hash, id.to_string())
    }

    /// The number of the integer id `id` (the id is its decimal text), adding it when new.
    pub fn intern_integer(&mut self, id: i64) -> u32 {
        let hash = HASHER.hash_one(id);
        if let Some(&(_, p)) = self.integers.find(hash, |&(i, _)| i == id) {
            return p;
        }
        let text = id.to_string();
        let p = match self.get(&text) {
            Some(p) => p,
            None => self.add(HASHER.hash_one(text.as_str()), text),
        };
        self.integers
            .insert_unique(hash, (id, p), |&(i, _)| HASHER.hash_one(i));
        p
    }

    fn add(&mut self, hash: u64, id: String) -> u32 {
        let p = self.ids.len() as u32;
        self.ids.push(id);
        let ids = &self.ids;
        self.positions
            .insert_unique(hash, p, |&q| HASHER.hash_one(ids[q as usize].as_str()));
        p
    }

    /// The number of `id`, if known.
    pub fn get(&self, id: &str) -> Option<u32> {
        let ids = &self.ids;
        self.positions
            .find(HASHER.hash_one(id), |&p| ids[p as usize] == id)
            .copied()
    }

    /// The id of a number.
    pub fn id(&self, position: u32) -> &str {
        &self.ids[position as usize]
    }

    /// All ids, by number.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Interactions as columns. A missing rating is NaN; a missing timestamp is `i64::MIN`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Interactions {
    pub users: IdMap,
    pub items: IdMap,
    pub user: Vec<u32>,
    pub item: Vec<u32>,
    pub rating: Vec<f32>,
    pub timestamp: Vec<i64>,
}

/// The timestamp of an interaction that has none.
pub const NO_TIMESTAMP: i64 = i64::MIN;

impl Interactions {
    /// Appends one interaction.
    pub fn push(&mut self, user: &str, item: &str, rating: Option<f32>, timestamp: Option<i64>) {
        let user = self.users.intern(user);
        let item = self.items.intern(item);
        self.push_numbers(user, item, rating, timestamp);
    }

    /// Appends one interaction of ids already interned in `users` and `items`.
    pub fn push_numbers(
        &mut self,
        user: u32,
        item: u32,
        rating: Option<f32>,
        timestamp: Option<i64>,
    ) {
        self.user.push(user);
        self.item.push(item);
        self.rating.push(rating.unwrap_or(f32::NAN));
        self.timestamp.push(timestamp.unwrap_or(NO_TIMESTAMP));
    }

    /// Number of interactions.
    pub fn len(&self) -> usize {
        self.user.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.user.is_empty()
    }

    /// True when any interaction has a rating.
    pub fn has_ratings(&self) -> bool {
        self.rating.iter().any(|r| !r.is_nan())
    }
}

/// One user's interactions after cleaning: `(item, value, timestamp)`.
pub type UserItems = Vec<(u32, f32, i64)>;
