//! A table of user-item interactions with interned string ids.

use std::collections::HashMap;

/// String ids interned to dense numbers in order of first appearance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdMap {
    ids: Vec<String>,
    positions: HashMap<String, u32>,
}

impl IdMap {
    /// The number of `id`, adding it when new.
    pub fn intern(&mut self, id: &str) -> u32 {
        if let Some(&p) = self.positions.get(id) {
            return p;
        }
        let p = self.ids.len() as u32;
        self.ids.push(id.to_string());
        self.positions.insert(id.to_string(), p);
        p
    }

    /// The number of `id`, if known.
    pub fn get(&self, id: &str) -> Option<u32> {
        self.positions.get(id).copied()
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
