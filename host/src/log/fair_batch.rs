//! Which queued appends the writer commits together (`appender.rs`): every tenant with
//! appends waiting gets its share of the batch, so one tenant's bulk import (hundreds of
//! appends queued at once) cannot take whole commits while a neighbour's command waits
//! behind it for the next. Within a tenant, appends keep their order: each batch takes
//! a prefix of each tenant's queue.

use std::collections::{HashMap, VecDeque};

/// Takes the next batch out of `waiting`: at most `max` requests (an atomic group
/// counts its members, and the first item is always taken, so a group larger than
/// `max` still goes through), each tenant first up to its share (`max` divided among
/// the tenants waiting), then, with room left, more of each in order of arrival.
/// The rest stays queued, in order.
pub fn take<T, K: Eq + std::hash::Hash>(
    waiting: &mut VecDeque<T>,
    max: usize,
    of: impl Fn(&T) -> (K, usize),
) -> Vec<T> {
    let sizes: Vec<(K, usize)> = waiting.iter().map(&of).collect();
    let total: usize = sizes.iter().map(|(_, size)| size).sum();
    if total <= max {
        return waiting.drain(..).collect();
    }
    let mut tenants: HashMap<&K, usize> = HashMap::new();
    for (tenant, _) in &sizes {
        let next = tenants.len();
        tenants.entry(tenant).or_insert(next);
    }
    let share = (max / tenants.len()).max(1);
    // Per tenant: what it has taken, and whether its prefix has ended.
    let mut taken = vec![0usize; tenants.len()];
    let mut ended = vec![false; tenants.len()];
    let mut chosen = vec![false; sizes.len()];
    let mut room = max;
    for limit in [Some(share), None] {
        // Each pass goes on from where each tenant's prefix stopped.
        ended.iter_mut().for_each(|e| *e = false);
        for (index, (tenant, size)) in sizes.iter().enumerate() {
            let t = tenants[tenant];
            if chosen[index] || ended[t] {
                continue;
            }
            let within_share = limit.is_none_or(|share| taken[t] + size <= share || taken[t] == 0);
            if (index == 0 || *size <= room) && within_share {
                chosen[index] = true;
                taken[t] += size;
                room = room.saturating_sub(*size);
            } else {
                ended[t] = true;
            }
        }
    }
    let mut batch = Vec::new();
    let mut rest = VecDeque::new();
    for (item, chosen) in waiting.drain(..).zip(chosen) {
        if chosen {
            batch.push(item);
        } else {
            rest.push_back(item);
        }
    }
    *waiting = rest;
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(items: &[(&'static str, usize)], max: usize) -> (Vec<(&'static str, usize)>, usize) {
        let mut waiting: VecDeque<_> = items.iter().copied().collect();
        let taken = take(&mut waiting, max, |(t, n)| (*t, *n));
        (taken, waiting.len())
    }

    #[test]
    fn a_bulk_tenant_leaves_room_for_a_neighbour_queued_behind_it() {
        let mut items = vec![("import", 1); 300];
        items.push(("neighbour", 1));
        let (taken, left) = batch(&items, 256);
        assert_eq!(taken.len(), 256);
        assert!(taken.contains(&("neighbour", 1)));
        assert_eq!(left, 45);
    }

    #[test]
    fn alone_a_tenant_fills_whole_batches_in_order() {
        let items: Vec<_> = (0..300).map(|_| ("import", 1)).collect();
        let (taken, left) = batch(&items, 256);
        assert_eq!((taken.len(), left), (256, 44));
    }

    #[test]
    fn a_tenants_appends_keep_their_order_and_a_large_group_still_goes() {
        let mut waiting: VecDeque<(&str, usize, u32)> =
            VecDeque::from(vec![("a", 300, 0), ("b", 1, 0), ("a", 1, 1), ("b", 1, 1)]);
        let taken = take(&mut waiting, 256, |(t, n, _)| (*t, *n));
        // The group of 300 goes first; `a`'s next waits behind it, `b` shares.
        assert_eq!(taken, vec![("a", 300, 0)]);
        let taken = take(&mut waiting, 256, |(t, n, _)| (*t, *n));
        assert_eq!(taken, vec![("b", 1, 0), ("a", 1, 1), ("b", 1, 1)]);
    }
}
