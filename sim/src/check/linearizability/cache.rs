//! The memo of configurations already explored: compact keys in a flat
//! arena, exact repeats and subsumption by fewer optional operations.

use super::*;

/// Identity hasher for keys that are already well-mixed 64-bit hashes.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub(super) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

pub(super) const NONE: u32 = u32::MAX;

/// Lowe's cache of configurations seen, with subsumption on optional operations.
///
/// A configuration is (set of linearized operations, state, whether the last
/// operation linearized is optional) — the last part because the moves allowed
/// next depend on it (see [`Search::run`]). Every configuration recorded either
/// is on the current search path ("active") or has been fully explored without
/// success ("finished"). A new configuration C is pruned if it was recorded
/// before (it cannot be active: sets grow along the path), or if a *finished*
/// one has the same state, flag and definite operations and a *subset* of C's
/// optional operations: any way to complete C is also a way to complete that
/// one (optional operations never need to be linearized and never block
/// others; identical ones can be swapped), which has none.
///
/// The definite part of a set is stored exactly but compactly (see
/// [`Search::encode`]), followed by the optional-operation bitset, in a flat
/// arena. Entries are chained by a hash of (definite set, state, flag) for the
/// subsumption check, and by a hash of the whole configuration for the exact
/// check.
pub(super) struct Cache {
    pub(super) groups: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
    pub(super) exact: HashMap<u64, u32, BuildHasherDefault<IdHasher>>,
    pub(super) entries: Vec<CacheEntry>,
    pub(super) arena: Vec<u64>,
}

pub(super) struct CacheEntry {
    pub(super) state: u32,
    pub(super) last_optional: bool,
    pub(super) active: bool,
    pub(super) def_len: u32,
    pub(super) next_in_group: u32,
    pub(super) next_exact: u32,
    pub(super) offset: usize,
}

/// How many entries of a group are compared for subsumption (the oldest ones,
/// which tend to have the fewest optional operations). Checking fewer only
/// prunes less; exact repeats are always found.
pub(super) const SUBSUMPTION_SCAN: usize = 64;

impl Cache {
    pub(super) fn new() -> Self {
        Cache { groups: HashMap::default(), exact: HashMap::default(), entries: Vec::new(), arena: Vec::new() }
    }

    pub(super) fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Approximate bytes held: entries, the arena, and both hash maps.
    pub(super) fn memory_bytes(&self) -> u64 {
        let entries = self.entries.capacity() * std::mem::size_of::<CacheEntry>();
        let arena = self.arena.capacity() * 8;
        let maps = (self.groups.capacity() + self.exact.capacity()) * 16;
        (entries + arena + maps) as u64
    }

    /// Records the configuration as active and returns its index, or None if
    /// it is pruned. `group_hash` covers the definite set, the state and the
    /// flag; `exact_hash` the optional set too.
    pub(super) fn insert(
        &mut self,
        group_hash: u64,
        exact_hash: u64,
        def_key: &[u64],
        opt: &[u64],
        state: u32,
        last_optional: bool,
    ) -> Option<u32> {
        let same_group = |c: &CacheEntry, arena: &[u64]| {
            c.state == state
                && c.last_optional == last_optional
                && c.def_len as usize == def_key.len()
                && arena[c.offset..c.offset + def_key.len()] == *def_key
        };
        let exact_head = self.exact.get(&exact_hash).copied().unwrap_or(NONE);
        let mut e = exact_head;
        while e != NONE {
            let c = &self.entries[e as usize];
            let def_end = c.offset + c.def_len as usize;
            if same_group(c, &self.arena) && self.arena[def_end..def_end + opt.len()] == *opt {
                return None;
            }
            e = c.next_exact;
        }
        let group_head = self.groups.get(&group_hash).copied().unwrap_or(NONE);
        let mut e = group_head;
        let mut scanned = 0;
        while e != NONE && scanned < SUBSUMPTION_SCAN {
            let c = &self.entries[e as usize];
            let def_end = c.offset + c.def_len as usize;
            if !c.active
                && same_group(c, &self.arena)
                && self.arena[def_end..def_end + opt.len()].iter().zip(opt).all(|(old, cur)| old & !cur == 0)
            {
                return None;
            }
            scanned += 1;
            e = c.next_in_group;
        }
        // Keep the oldest entry first in its group: the search tends to
        // record small sets of optional operations before their supersets.
        let idx = self.entries.len() as u32;
        let next_in_group = if group_head == NONE {
            self.groups.insert(group_hash, idx);
            NONE
        } else {
            std::mem::replace(&mut self.entries[group_head as usize].next_in_group, idx)
        };
        self.exact.insert(exact_hash, idx);
        self.entries.push(CacheEntry {
            state,
            last_optional,
            active: true,
            def_len: def_key.len() as u32,
            next_in_group,
            next_exact: exact_head,
            offset: self.arena.len(),
        });
        self.arena.extend_from_slice(def_key);
        self.arena.extend_from_slice(opt);
        Some(idx)
    }

    /// Marks a configuration as fully explored without success.
    pub(super) fn finish(&mut self, idx: u32) {
        self.entries[idx as usize].active = false;
    }
}
