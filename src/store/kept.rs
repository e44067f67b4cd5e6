//! What a node keeps in memory of what it read: a map bounded in total weight whose entries
//! are forgotten after a fixed time. Used for read loads ([`super::reads`]) and small blobs
//! ([`super::blob`]); neither decides anything from it (see there). Entries may hold key
//! wraps or ciphertext, so `Debug` shows only how many there are.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries with the time each was kept and whether a caller was sent to renew it, and
/// their total weight.
type Entries<K, V> = (HashMap<K, (Instant, bool, V)>, usize);

/// A bounded map with a time to live. Past half its time, an entry sends one caller to
/// renew it (that caller gets nothing) while the others still get it, so the many callers
/// of a busy entry do not all go to the source at once when it expires.
pub(crate) struct Kept<K, V> {
    ttl: Duration,
    capacity: usize,
    weight: fn(&V) -> usize,
    entries: Mutex<Entries<K, V>>,
}

impl<K, V> std::fmt::Debug for Kept<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = self.entries.lock().map_or(0, |e| e.0.len());
        write!(f, "Kept({kept} entries)")
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Kept<K, V> {
    /// Keeps entries for `ttl`, at most `capacity` in total `weight`.
    pub(crate) fn new(ttl: Duration, capacity: usize, weight: fn(&V) -> usize) -> Self {
        Self {
            ttl,
            capacity,
            weight,
            entries: Mutex::new((HashMap::new(), 0)),
        }
    }

    /// The entry under `key`, if it was kept less than the time to live ago — except for
    /// the first caller past half that time, who is to renew it ([`Kept::put`]).
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let mut guard = self.entries.lock().ok()?;
        let (entries, total) = &mut *guard;
        match entries.get_mut(key) {
            Some((at, renewing, value)) if at.elapsed() < self.ttl => {
                if !*renewing && at.elapsed() >= self.ttl / 2 {
                    *renewing = true;
                    return None;
                }
                Some(value.clone())
            }
            Some(_) => {
                if let Some((_, _, gone)) = entries.remove(key) {
                    *total -= (self.weight)(&gone);
                }
                None
            }
            None => None,
        }
    }

    /// Keeps `value` under `key`. When it would not fit, the expired entries go first,
    /// then all of them; a value heavier than the whole capacity is not kept.
    pub(crate) fn put(&self, key: K, value: V) {
        let weight = (self.weight)(&value);
        let Ok(mut guard) = self.entries.lock() else {
            return;
        };
        if weight > self.capacity {
            return;
        }
        let (entries, total) = &mut *guard;
        if *total + weight > self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, (at, _, _)| at.elapsed() < ttl);
            *total = entries.values().map(|(_, _, v)| (self.weight)(v)).sum();
            if *total + weight > self.capacity {
                entries.clear();
                *total = 0;
            }
        }
        *total += weight;
        if let Some((_, _, old)) = entries.insert(key, (Instant::now(), false, value)) {
            *total -= (self.weight)(&old);
        }
    }

    /// Forgets the entry under `key`.
    pub(crate) fn forget(&self, key: &K) {
        if let Ok(mut guard) = self.entries.lock() {
            let (entries, total) = &mut *guard;
            if let Some((_, _, gone)) = entries.remove(key) {
                *total -= (self.weight)(&gone);
            }
        }
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        if let Ok(mut guard) = self.entries.lock() {
            *guard = (HashMap::new(), 0);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_the_bound_holds_and_forgetting_forgets() {
        let kept: Kept<u32, Vec<u8>> = Kept::new(Duration::from_millis(50), 10, Vec::len);
        kept.put(1, vec![0; 4]);
        kept.put(2, vec![0; 4]);
        assert_eq!(kept.get(&1), Some(vec![0; 4]));
        // 4 + 4 + 4 > 10: nothing has expired, so everything goes to make room.
        kept.put(3, vec![0; 4]);
        assert_eq!((kept.get(&1), kept.get(&2)), (None, None));
        assert!(kept.get(&3).is_some());
        kept.put(4, vec![0; 11]);
        assert_eq!(kept.get(&4), None, "heavier than the whole bound");
        kept.forget(&3);
        assert_eq!(kept.get(&3), None);
        kept.put(5, vec![0; 2]);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(kept.get(&5), None, "expired");
        kept.put(6, vec![0; 10]);
        assert!(
            kept.get(&6).is_some(),
            "the expired weight no longer counts"
        );
        kept.clear();
        assert_eq!(kept.get(&6), None);
    }

    #[test]
    fn past_half_its_time_one_caller_renews_an_entry_and_the_others_still_get_it() {
        let kept: Kept<u32, u8> = Kept::new(Duration::from_millis(200), 10, |_| 1);
        kept.put(1, 7);
        assert_eq!((kept.get(&1), kept.get(&1)), (Some(7), Some(7)));
        std::thread::sleep(Duration::from_millis(110));
        assert_eq!(
            kept.get(&1),
            None,
            "the first caller past half the time renews"
        );
        assert_eq!((kept.get(&1), kept.get(&1)), (Some(7), Some(7)));
        kept.put(1, 8);
        assert_eq!(kept.get(&1), Some(8), "renewed: young again");
        std::thread::sleep(Duration::from_millis(110));
        assert_eq!(kept.get(&1), None);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(kept.get(&1), None, "not renewed: expired for everyone");
    }
}
