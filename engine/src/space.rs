//! A search space: named integer parameters, each with an ordered domain, and a validity
//! rule that is either the constraint programs from Python (`SearchSpace.engine_spec()`) or
//! membership in a listed set (a recorded space: only measured configurations exist).
//!
//! A point is a vector of *positions* (index into each domain). Its index in the full space
//! is mixed-radix with the first parameter most significant, so sorted indices are the
//! order of `itertools.product`, i.e. of `SearchSpace.iter_valid()`.

use std::collections::HashMap;

use crate::expr::Program;
use crate::rng::Rng;

pub type Point = Vec<u32>;

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub values: Vec<i64>,
}

#[derive(Debug, Clone)]
pub struct Space {
    params: Vec<Param>,
    /// strides[i] = product of the domain sizes after i.
    strides: Vec<u64>,
    size: u64,
    rules: Vec<Program>,
    /// rules_at[d]: the rules whose last parameter is d, checked as soon as d is fixed.
    rules_at: Vec<Vec<usize>>,
    /// False when a rule without parameters fails: nothing is valid.
    constant_ok: bool,
    /// Sorted indices of all valid points, when known (enumerated or listed).
    valid: Option<Vec<u64>>,
    /// Validity is membership in `valid` (recorded spaces).
    listed: bool,
    /// O(1) membership and rank over the valid list, when the full space is small enough.
    bits: Option<BitIndex>,
}

/// A bitset over the full space with per-block prefix counts: `contains` is one load and
/// `rank` (position among valid points) one load plus a few popcounts, against ~20 cache
/// misses for a binary search or a dozen rule programs for a constraint check.
#[derive(Debug, Clone)]
struct BitIndex {
    words: Vec<u64>,
    /// prefix[b] = number of set bits in words[..8 * b].
    prefix: Vec<u32>,
}

/// Largest full space that gets a bitset: 2^30 points = 128 MiB of bits.
const MAX_BITSET_POINTS: u64 = 1 << 30;

impl BitIndex {
    fn build(size: u64, sorted: &[u64]) -> Option<BitIndex> {
        if size > MAX_BITSET_POINTS || sorted.len() > u32::MAX as usize {
            return None;
        }
        let mut words = vec![0u64; size.div_ceil(64) as usize];
        for &i in sorted {
            words[(i / 64) as usize] |= 1u64 << (i % 64);
        }
        let mut prefix = Vec::with_capacity(words.len() / 8 + 1);
        let mut total = 0u32;
        for block in words.chunks(8) {
            prefix.push(total);
            total += block.iter().map(|w| w.count_ones()).sum::<u32>();
        }
        Some(BitIndex { words, prefix })
    }

    #[inline]
    fn contains(&self, i: u64) -> bool {
        self.words
            .get((i / 64) as usize)
            .is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    #[inline]
    fn rank(&self, i: u64) -> Option<usize> {
        if !self.contains(i) {
            return None;
        }
        let w = (i / 64) as usize;
        let block = w / 8;
        let mut r = self.prefix[block];
        for word in &self.words[block * 8..w] {
            r += word.count_ones();
        }
        r += (self.words[w] & ((1u64 << (i % 64)) - 1)).count_ones();
        Some(r as usize)
    }
}

/// Default cap on enumeration: 2^24 valid points (128 MiB of indices). Above it the space
/// samples instead (rejection, then randomised depth-first search).
pub const DEFAULT_MAX_ENUMERATE: u64 = 1 << 24;

impl Space {
    fn check_params(params: &[Param]) -> Result<(Vec<u64>, u64), String> {
        if params.is_empty() {
            return Err("a space needs at least one parameter".into());
        }
        for p in params {
            if p.values.is_empty() {
                return Err(format!(
                    "parameter {:?} has an empty domain; give it at least one value",
                    p.name
                ));
            }
            let mut sorted = p.values.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != p.values.len() {
                return Err(format!(
                    "parameter {:?} lists a value twice: {:?}",
                    p.name, p.values
                ));
            }
        }
        for (i, p) in params.iter().enumerate() {
            if params[..i].iter().any(|q| q.name == p.name) {
                return Err(format!("parameter {:?} is listed twice", p.name));
            }
        }
        let mut strides = vec![1u64; params.len()];
        let mut size: u64 = 1;
        for i in (0..params.len()).rev() {
            strides[i] = size;
            size = size
                .checked_mul(params[i].values.len() as u64)
                .ok_or_else(|| {
                    "the space has more than 2^64 points; shrink the domains".to_string()
                })?;
        }
        Ok((strides, size))
    }

    /// A space whose validity is the given constraints (the language of `expr`).
    pub fn constrained(
        params: Vec<Param>,
        limits: &HashMap<String, i64>,
        constraints: &[String],
        max_enumerate: u64,
    ) -> Result<Space, String> {
        let (strides, size) = Self::check_params(&params)?;
        let names: Vec<String> = params.iter().map(|p| p.name.clone()).collect();
        let rules = constraints
            .iter()
            .map(|c| Program::compile(c, &names, limits))
            .collect::<Result<Vec<_>, _>>()?;
        let mut rules_at = vec![Vec::new(); params.len()];
        let mut constant_ok = true;
        for (i, r) in rules.iter().enumerate() {
            match r.last_param {
                Some(d) => rules_at[d].push(i),
                None => constant_ok &= r.holds(&[]),
            }
        }
        let mut space = Space {
            params,
            strides,
            size,
            rules,
            rules_at,
            constant_ok,
            valid: None,
            listed: false,
            bits: None,
        };
        space.valid = space.enumerate(max_enumerate);
        space.bits = space
            .valid
            .as_ref()
            .and_then(|v| BitIndex::build(space.size, v));
        Ok(space)
    }

    /// A space whose valid points are exactly `indices` (recorded configurations).
    pub fn listed(params: Vec<Param>, mut indices: Vec<u64>) -> Result<Space, String> {
        let (strides, size) = Self::check_params(&params)?;
        indices.sort_unstable();
        indices.dedup();
        if indices.last().is_some_and(|&i| i >= size) {
            return Err("a listed point lies outside the space".into());
        }
        Ok(Space {
            bits: BitIndex::build(size, &indices),
            rules_at: vec![Vec::new(); params.len()],
            params,
            strides,
            size,
            rules: Vec::new(),
            constant_ok: true,
            valid: Some(indices),
            listed: true,
        })
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    pub fn dims(&self) -> usize {
        self.params.len()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of valid points, None when the space was too large to enumerate.
    pub fn valid_count(&self) -> Option<u64> {
        self.valid.as_ref().map(|v| v.len() as u64)
    }

    pub fn valid_indices(&self) -> Option<&[u64]> {
        self.valid.as_deref()
    }

    pub fn rule_sources(&self) -> Vec<&str> {
        self.rules.iter().map(Program::source).collect()
    }

    #[inline]
    pub fn index_of(&self, point: &[u32]) -> u64 {
        point
            .iter()
            .zip(&self.strides)
            .map(|(&p, &s)| u64::from(p) * s)
            .sum()
    }

    pub fn point_of(&self, mut index: u64) -> Result<Point, String> {
        if index >= self.size {
            return Err(format!(
                "index {index} is outside the space (size {})",
                self.size
            ));
        }
        let mut point = Vec::with_capacity(self.params.len());
        for (p, &s) in self.params.iter().zip(&self.strides) {
            let pos = index / s;
            index %= s;
            debug_assert!((pos as usize) < p.values.len());
            point.push(pos as u32);
        }
        Ok(point)
    }

    pub fn values_of(&self, point: &[u32]) -> Vec<i64> {
        point
            .iter()
            .zip(&self.params)
            .map(|(&i, p)| p.values[i as usize])
            .collect()
    }

    /// Positions of a vector of parameter values (in parameter order).
    pub fn point_from_values(&self, values: &[i64]) -> Result<Point, String> {
        if values.len() != self.params.len() {
            return Err(format!(
                "expected {} parameter values ({}), got {}",
                self.params.len(),
                self.params
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                values.len()
            ));
        }
        values
            .iter()
            .zip(&self.params)
            .map(|(v, p)| {
                p.values
                    .iter()
                    .position(|x| x == v)
                    .map(|i| i as u32)
                    .ok_or_else(|| format!("{} = {v} is not in its domain {:?}", p.name, p.values))
            })
            .collect()
    }

    /// Position of `index` among the valid points (recorded spaces: the record's row).
    #[inline]
    pub fn valid_rank(&self, index: u64) -> Option<usize> {
        match &self.bits {
            Some(b) => b.rank(index),
            None => self.valid.as_ref()?.binary_search(&index).ok(),
        }
    }

    #[inline]
    pub fn is_valid(&self, point: &[u32]) -> bool {
        if point.len() != self.params.len()
            || point
                .iter()
                .zip(&self.params)
                .any(|(&i, p)| i as usize >= p.values.len())
        {
            return false;
        }
        if let Some(b) = &self.bits {
            return b.contains(self.index_of(point));
        }
        if self.listed {
            return self.valid_rank(self.index_of(point)).is_some();
        }
        if !self.constant_ok {
            return false;
        }
        let mut buf = [0i64; 32];
        let mut heap;
        let vals: &mut [i64] = if point.len() <= 32 {
            &mut buf[..point.len()]
        } else {
            heap = vec![0i64; point.len()];
            &mut heap
        };
        for (d, (&i, p)) in point.iter().zip(&self.params).enumerate() {
            vals[d] = p.values[i as usize];
        }
        self.rules.iter().all(|r| r.holds(vals))
    }

    /// `is_valid` for a full-space index.
    pub fn is_valid_index(&self, index: u64) -> bool {
        match &self.bits {
            Some(b) => b.contains(index),
            None => self.point_of(index).is_ok_and(|p| self.is_valid(&p)),
        }
    }

    /// Depth-first enumeration that checks each rule as soon as its last parameter is fixed,
    /// so whole subtrees are cut at once. None if more than `cap` points are valid.
    fn enumerate(&self, cap: u64) -> Option<Vec<u64>> {
        let mut out = Vec::new();
        if !self.constant_ok {
            return Some(out);
        }
        let mut vals = vec![0i64; self.params.len()];
        if self.dfs(0, 0, &mut vals, &mut out, cap) {
            Some(out)
        } else {
            None
        }
    }

    fn dfs(&self, d: usize, base: u64, vals: &mut [i64], out: &mut Vec<u64>, cap: u64) -> bool {
        let last = d + 1 == self.params.len();
        for (i, &v) in self.params[d].values.iter().enumerate() {
            vals[d] = v;
            if !self.rules_at[d].iter().all(|&r| self.rules[r].holds(vals)) {
                continue;
            }
            let index = base + i as u64 * self.strides[d];
            if last {
                if out.len() as u64 >= cap {
                    return false;
                }
                out.push(index);
            } else if !self.dfs(d + 1, index, vals, out, cap) {
                return false;
            }
        }
        true
    }

    /// A uniformly random valid point (when enumerated); otherwise rejection sampling, then a
    /// randomised depth-first search (valid, though no longer exactly uniform).
    pub fn random_valid(&self, rng: &mut Rng) -> Option<Point> {
        if let Some(valid) = &self.valid {
            if valid.is_empty() {
                return None;
            }
            return self.point_of(valid[rng.index(valid.len())]).ok();
        }
        for _ in 0..256 {
            let p: Point = self
                .params
                .iter()
                .map(|p| rng.index(p.values.len()) as u32)
                .collect();
            if self.is_valid(&p) {
                return Some(p);
            }
        }
        let mut vals = vec![0i64; self.params.len()];
        let mut point = vec![0u32; self.params.len()];
        let mut budget = 1_000_000usize;
        if self.random_dfs(0, &mut vals, &mut point, rng, &mut budget) {
            Some(point)
        } else {
            None
        }
    }

    fn random_dfs(
        &self,
        d: usize,
        vals: &mut [i64],
        point: &mut [u32],
        rng: &mut Rng,
        budget: &mut usize,
    ) -> bool {
        let n = self.params[d].values.len();
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.index(i + 1));
        }
        for i in order {
            if *budget == 0 {
                return false;
            }
            *budget -= 1;
            vals[d] = self.params[d].values[i];
            point[d] = i as u32;
            if !self.rules_at[d].iter().all(|&r| self.rules[r].holds(vals)) {
                continue;
            }
            if d + 1 == self.params.len() || self.random_dfs(d + 1, vals, point, rng, budget) {
                return true;
            }
        }
        false
    }

    /// Valid points differing from `point` in one parameter: to an adjacent value of its
    /// domain (`any = false`) or to any other value (`any = true`).
    pub fn neighbours(&self, point: &[u32], any: bool) -> Vec<Point> {
        let mut out = Vec::new();
        for d in 0..point.len().min(self.params.len()) {
            let n = self.params[d].values.len() as u32;
            let here = point[d];
            let candidates: Vec<u32> = if any {
                (0..n).filter(|&i| i != here).collect()
            } else {
                [here.checked_sub(1), (here + 1 < n).then_some(here + 1)]
                    .into_iter()
                    .flatten()
                    .collect()
            };
            for c in candidates {
                let mut q = point.to_vec();
                q[d] = c;
                if self.is_valid(&q) {
                    out.push(q);
                }
            }
        }
        out
    }

    /// Full-space indices of the valid points one parameter one step (an adjacent value of
    /// its domain) from the point at `index`, into `out` (cleared first), parameter by
    /// parameter, the lower value before the higher.
    pub fn adjacent(&self, index: u64, out: &mut Vec<u64>) {
        out.clear();
        let mut rest = index;
        for (d, &stride) in self.strides.iter().enumerate() {
            let here = (rest / stride) as u32;
            rest %= stride;
            let n = self.params[d].values.len() as u32;
            for to in [here.checked_sub(1), (here + 1 < n).then_some(here + 1)]
                .into_iter()
                .flatten()
            {
                let q = index - u64::from(here) * stride + u64::from(to) * stride;
                if self.is_valid_index(q) {
                    out.push(q);
                }
            }
        }
    }

    /// One random move of one parameter, validity not checked: (parameter, new position), to
    /// an adjacent value with probability `p_adjacent` else to any other value; None when the
    /// parameter drawn has a single value. Both neighbour forms draw through here, so a seed
    /// gives the same walk whichever form a strategy uses.
    #[inline(always)]
    fn draw_move(&self, point: &[u32], rng: &mut Rng, p_adjacent: f64) -> Option<(usize, u32)> {
        let d = rng.index(self.params.len());
        let n = self.params[d].values.len() as u32;
        if n < 2 {
            return None;
        }
        let here = point[d];
        let to = if rng.chance(p_adjacent) {
            match (here == 0, here + 1 == n) {
                (true, _) => 1,
                (_, true) => here - 1,
                _ if rng.chance(0.5) => here - 1,
                _ => here + 1,
            }
        } else {
            let r = rng.index(n as usize - 1) as u32;
            if r >= here {
                r + 1
            } else {
                r
            }
        };
        Some((d, to))
    }

    /// The allocation-free form of `random_neighbour` for walkers: `point` (whose full-space
    /// index is `index`) is left as it was; the move is returned as (parameter, new position,
    /// new index), the index updated by one stride instead of recomputed. Validity is one
    /// bitset load when the space has one (every enumerated or recorded space).
    #[inline(always)]
    pub fn neighbour_move(
        &self,
        point: &mut [u32],
        index: u64,
        rng: &mut Rng,
        p_adjacent: f64,
        tries: usize,
    ) -> Option<(usize, u32, u64)> {
        for _ in 0..tries {
            let Some((d, to)) = self.draw_move(point, rng, p_adjacent) else {
                continue;
            };
            let here = point[d];
            let q = index - u64::from(here) * self.strides[d] + u64::from(to) * self.strides[d];
            let ok = match &self.bits {
                Some(b) => b.contains(q),
                None => {
                    point[d] = to;
                    let ok = self.is_valid(point);
                    point[d] = here;
                    ok
                }
            };
            if ok {
                return Some((d, to, q));
            }
        }
        None
    }

    /// `point_of` into a reused buffer (no allocation). `index` must be < `size()`.
    #[inline]
    pub fn point_into(&self, mut index: u64, out: &mut Point) {
        out.clear();
        for &s in &self.strides {
            out.push((index / s) as u32);
            index %= s;
        }
    }

    /// Validity of `point` whose full-space index is `index`: one bitset load when the space
    /// has a bitset, else the full check.
    #[inline]
    pub fn valid_at(&self, point: &[u32], index: u64) -> bool {
        match &self.bits {
            Some(b) => b.contains(index),
            None => self.is_valid(point),
        }
    }

    /// Stride of parameter d in the mixed-radix index.
    #[inline]
    pub fn stride(&self, d: usize) -> u64 {
        self.strides[d]
    }

    /// One random valid neighbour: a random parameter moved to an adjacent value (with
    /// probability `p_adjacent`) or to any other value. None after `tries` invalid draws.
    pub fn random_neighbour(
        &self,
        point: &[u32],
        rng: &mut Rng,
        p_adjacent: f64,
        tries: usize,
    ) -> Option<Point> {
        let mut q = point.to_vec();
        for _ in 0..tries {
            let Some((d, to)) = self.draw_move(point, rng, p_adjacent) else {
                continue;
            };
            let here = point[d];
            q[d] = to;
            if self.is_valid(&q) {
                return Some(q);
            }
            q[d] = here;
        }
        None
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn toy() -> Space {
        let params = vec![
            Param {
                name: "a".into(),
                values: vec![1, 2, 4, 8],
            },
            Param {
                name: "b".into(),
                values: vec![1, 2, 4, 8],
            },
            Param {
                name: "c".into(),
                values: vec![0, 1],
            },
        ];
        let mut limits = HashMap::new();
        limits.insert("cap".to_string(), 16);
        let rules = vec!["a * b <= cap".to_string(), "c == 0 or a >= 2".to_string()];
        Space::constrained(params, &limits, &rules, DEFAULT_MAX_ENUMERATE).unwrap()
    }

    fn brute(space: &Space) -> Vec<u64> {
        (0..space.size())
            .filter(|&i| space.is_valid(&space.point_of(i).unwrap()))
            .collect()
    }

    #[test]
    fn enumeration_matches_brute_force() {
        let s = toy();
        let expected: Vec<u64> = {
            let mut v = Vec::new();
            for (ia, a) in [1, 2, 4, 8].iter().enumerate() {
                for (ib, b) in [1, 2, 4, 8].iter().enumerate() {
                    for c in 0..2u64 {
                        if a * b <= 16 && (c == 0 || *a >= 2) {
                            v.push(ia as u64 * 8 + ib as u64 * 2 + c);
                        }
                    }
                }
            }
            v
        };
        assert_eq!(s.valid_indices().unwrap(), expected.as_slice());
        assert_eq!(brute(&s), expected);
        assert_eq!(s.size(), 32);
    }

    #[test]
    fn bitset_rank_matches_binary_search() {
        let params = vec![
            Param {
                name: "a".into(),
                values: (0..50).collect(),
            },
            Param {
                name: "b".into(),
                values: (0..37).collect(),
            },
        ];
        let picked: Vec<u64> = (0..50 * 37).filter(|i| (i * 7919) % 13 < 4).collect();
        let s = Space::listed(params, picked.clone()).unwrap();
        assert!(s.bits.is_some());
        for i in 0..50 * 37 {
            assert_eq!(s.valid_rank(i), picked.binary_search(&i).ok(), "index {i}");
        }
        let t = toy();
        assert!(t.bits.is_some());
        for i in 0..t.size() {
            let p = t.point_of(i).unwrap();
            assert_eq!(
                t.is_valid(&p),
                t.rules.iter().all(|r| r.holds(&t.values_of(&p)))
            );
        }
    }

    #[test]
    fn index_round_trip_and_values() {
        let s = toy();
        for i in 0..s.size() {
            let p = s.point_of(i).unwrap();
            assert_eq!(s.index_of(&p), i);
            let v = s.values_of(&p);
            assert_eq!(s.point_from_values(&v).unwrap(), p);
        }
        assert!(s.point_of(32).is_err());
        assert!(s.point_from_values(&[3, 1, 0]).is_err());
        assert!(s.point_from_values(&[1, 1]).is_err());
    }

    #[test]
    fn neighbours_are_valid_and_one_step_away() {
        let s = toy();
        let p = s.point_from_values(&[2, 4, 1]).unwrap();
        let adj = s.neighbours(&p, false);
        let vals: Vec<Vec<i64>> = adj.iter().map(|q| s.values_of(q)).collect();
        // a: 1 (c=1 needs a>=2: invalid), 4 (4*4=16 ok); b: 2, 8 (2*8 ok); c: 0
        assert_eq!(
            vals,
            vec![vec![4, 4, 1], vec![2, 2, 1], vec![2, 8, 1], vec![2, 4, 0]]
        );
        let any = s.neighbours(&p, true);
        assert!(any.len() > adj.len());
        assert!(any.iter().all(|q| s.is_valid(q)));
        let mut rng = Rng::new(1);
        for _ in 0..100 {
            let q = s.random_neighbour(&p, &mut rng, 0.5, 50).unwrap();
            assert!(s.is_valid(&q));
            assert_eq!(q.iter().zip(&p).filter(|(x, y)| x != y).count(), 1);
        }
    }

    #[test]
    fn cap_switches_to_sampling() {
        let params = vec![
            Param {
                name: "a".into(),
                values: (0..100).collect(),
            },
            Param {
                name: "b".into(),
                values: (0..100).collect(),
            },
        ];
        let rules = vec!["(a + b) % 7 == 3".to_string()];
        let s = Space::constrained(params, &HashMap::new(), &rules, 10).unwrap();
        assert_eq!(s.valid_count(), None);
        let mut rng = Rng::new(3);
        for _ in 0..50 {
            let p = s.random_valid(&mut rng).unwrap();
            let v = s.values_of(&p);
            assert_eq!((v[0] + v[1]) % 7, 3);
        }
    }

    #[test]
    fn false_constant_rule_empties_the_space() {
        let params = vec![Param {
            name: "a".into(),
            values: vec![1, 2],
        }];
        let mut limits = HashMap::new();
        limits.insert("m".to_string(), 1);
        let s = Space::constrained(params, &limits, &["m > 5".to_string()], 100).unwrap();
        assert_eq!(s.valid_count(), Some(0));
        assert!(!s.is_valid(&[0]));
        assert!(s.random_valid(&mut Rng::new(0)).is_none());
    }

    #[test]
    fn listed_space_validity_is_membership() {
        let params = vec![
            Param {
                name: "x".into(),
                values: vec![10, 20, 30],
            },
            Param {
                name: "y".into(),
                values: vec![1, 2],
            },
        ];
        let s = Space::listed(params, vec![5, 0, 3]).unwrap();
        assert_eq!(s.valid_count(), Some(3));
        assert!(s.is_valid(&[0, 0]) && s.is_valid(&[1, 1]) && s.is_valid(&[2, 1]));
        assert!(!s.is_valid(&[0, 1]));
        assert_eq!(s.valid_rank(3), Some(1));
        let bad = vec![Param {
            name: "x".into(),
            values: vec![1, 1],
        }];
        assert!(Space::listed(bad, vec![]).is_err());
    }
}
