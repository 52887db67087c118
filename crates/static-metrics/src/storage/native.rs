//! The native-bucket cell of an observation by integer lookups only.
//!
//! [`NativeDesc::cell_of`] defines which cell a value of `v` storage units goes to: the zero
//! bucket up to the zero threshold, else the key of `v as f64 * unit` from its float exponent
//! and mantissa. Its cost on the hot path was the `u64 → f64` conversion, the multiply and the
//! mantissa search. That function is monotonic in `v`, so for each storage octave
//! (`v` in `[2^e, 2^(e+1))`, found from `leading_zeros`) a [`NativeTable`] lists the last `v`
//! before each change of cell and the cell after it: an observation is then one
//! `leading_zeros`, one search of a short row of integers (the same branch-free search as the
//! classic buckets) and one load. The table is built from `cell_of` itself, so the cells are
//! exactly the ones it defines, boundaries included; nothing of the layout changes.
//!
//! Tables are built once per distinct layout per process (every store with that family shares
//! them) and live for the rest of the process, like the stores that use them.

use std::sync::Mutex;

use crate::schema::{NativeDesc, Schema};

/// Storage octaves: octave `e` holds `v` in `[2^e, 2^(e+1))` (octave 0 also holds 0).
const OCTAVES: usize = 64;

/// The native cell of every `u64` of one layout, by storage octave (see the module docs).
pub struct NativeTable {
    /// Entries per octave in `bounds` (the widest octave's changes, padded to a search size).
    width: usize,
    /// Per octave, ascending: the last value before each change of cell, then `u64::MAX`
    /// padding (never below a value, so never counted).
    bounds: Box<[u64]>,
    /// Per octave, `width + 1` cells: the cell of a value with `i` bounds below it is entry `i`.
    cells: Box<[u32]>,
}

/// The number of `bounds` below `v`, by the classic buckets' search (see `handle.rs`).
type Search = fn(&[u64], u64) -> usize;

impl NativeTable {
    /// The table of `native`, computed from [`NativeDesc::cell_of`].
    pub fn build(native: &NativeDesc) -> NativeTable {
        let f = |v: u64| native.cell_of(v, |b, m| b.partition_point(|&x| x < m)) as u32;
        let mut rows: Vec<(Vec<u64>, Vec<u32>)> = Vec::with_capacity(OCTAVES);
        for e in 0..OCTAVES {
            let (lo, hi) = if e == 0 {
                (0u64, 1u64)
            } else {
                (
                    1u64 << e,
                    if e == 63 {
                        u64::MAX
                    } else {
                        (1u64 << (e + 1)) - 1
                    },
                )
            };
            let mut cell = f(lo);
            let (mut bounds, mut cells) = (Vec::new(), vec![cell]);
            let mut from = lo;
            // Each round finds the first value after `from` with another cell (the function
            // is monotonic, so a binary search over `(from, hi]` finds it).
            while f(hi) != cell {
                let (mut a, mut b) = (from, hi); // f(a) == cell, f(b) != cell
                while b - a > 1 {
                    let mid = a + (b - a) / 2;
                    if f(mid) == cell {
                        a = mid;
                    } else {
                        b = mid;
                    }
                }
                bounds.push(a);
                cell = f(b);
                cells.push(cell);
                from = b;
            }
            rows.push((bounds, cells));
        }
        let changes = rows.iter().map(|(b, _)| b.len()).max().unwrap_or(0);
        // Padded to what one search size covers, so every row takes the same search.
        let width = match changes {
            0..=3 => 3,
            4..=15 => 15,
            16..=63 => 63,
            n => n,
        };
        let mut bounds = Vec::with_capacity(OCTAVES * width);
        let mut cells = Vec::with_capacity(OCTAVES * (width + 1));
        for (b, c) in rows {
            let last = *c.last().expect("a row has a first cell");
            bounds.extend(
                b.iter()
                    .copied()
                    .chain(std::iter::repeat(u64::MAX))
                    .take(width),
            );
            cells.extend(
                c.iter()
                    .copied()
                    .chain(std::iter::repeat(last))
                    .take(width + 1),
            );
        }
        NativeTable {
            width,
            bounds: bounds.into_boxed_slice(),
            cells: cells.into_boxed_slice(),
        }
    }

    /// The cell (relative to the zero bucket's) of an observation of `v` storage units: the
    /// same as [`NativeDesc::cell_of`] for every `v`.
    #[inline(always)]
    pub fn cell(&self, v: u64, search: Search) -> usize {
        let e = 63 - (v | 1).leading_zeros() as usize;
        let w = self.width;
        let i = search(&self.bounds[e * w..e * w + w], v);
        self.cells[e * (w + 1) + i] as usize
    }
}

/// The tables of every native family of `schema`, by family index (`None` for the others),
/// shared with every other store of a family with the same layout.
pub(crate) fn tables(schema: &'static Schema) -> Box<[Option<&'static NativeTable>]> {
    type Key = (i8, u64, u64, i32, u32, &'static [u64]);
    static TABLES: Mutex<Vec<(Key, &'static NativeTable)>> = Mutex::new(Vec::new());
    let mut known = TABLES.lock().unwrap_or_else(|e| e.into_inner());
    schema
        .families
        .iter()
        .map(|f| match &f.kind {
            crate::schema::FamilyKind::Histogram(h) => h.native.as_ref().map(|n| {
                // Everything `cell_of` reads.
                let key = (
                    n.schema,
                    n.unit.to_bits(),
                    n.zero_threshold_units,
                    n.min_key,
                    n.keys,
                    n.mantissas,
                );
                match known.iter().find(|(k, _)| *k == key) {
                    Some(&(_, table)) => table,
                    None => {
                        let table: &'static NativeTable =
                            Box::leak(Box::new(NativeTable::build(n)));
                        known.push((key, table));
                        table
                    }
                }
            }),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `2^e` exactly, subnormal, zero or infinite where it must be.
    fn pow2(e: i32) -> f64 {
        if e > 1023 {
            f64::INFINITY
        } else if e >= -1022 {
            f64::from_bits(((e + 1023) as u64) << 52)
        } else if e >= -1074 {
            f64::from_bits(1 << (e + 1074))
        } else {
            0.0
        }
    }

    /// The upper bound of bucket `k`, `2^(k/2^schema)`: the in-octave factor as `powf` gives
    /// it (what the layout's mantissas are), times an exact power of two.
    fn bound(schema: i8, k: i32) -> f64 {
        let (octave, inner) = split(schema, k);
        inner * pow2(octave)
    }

    /// `2^(k/2^schema)` as a power of two and the in-octave factor.
    fn split(schema: i8, k: i32) -> (i32, f64) {
        if schema > 0 {
            let n = 1i32 << schema;
            let inner = 2f64.powf(f64::from(k.rem_euclid(n)) / f64::from(n));
            (k.div_euclid(n), inner)
        } else {
            (k.saturating_mul(1 << -i32::from(schema)), 1.0)
        }
    }

    /// Whether `x <= 2^(k/2^schema)`, without rounding the bound: `x` is scaled by the exact
    /// power of two instead (in two steps, so neither factor overflows), which keeps the
    /// comparison exact for subnormal `x` too.
    fn at_most(schema: i8, x: f64, k: i32) -> bool {
        let (octave, inner) = split(schema, k);
        let half = -octave / 2;
        x * pow2(half) * pow2(-octave - half) <= inner
    }

    /// The slow reference key of a finite `x > 0`: the `k` with `bound(k - 1) < x <= bound(k)`,
    /// by walking from an estimate; no bit tricks. `+∞` is past every finite bound: its key
    /// is that of `2^1024`.
    fn reference_key(schema: i8, x: f64) -> i32 {
        if x == f64::INFINITY {
            let per = 1i32 << schema.max(0);
            return (1024 * per + (1 << (-schema).max(0)) - 1) >> (-schema).max(0);
        }
        let per = 2f64.powi(i32::from(schema));
        let estimate = (x.log2() * per).ceil().clamp(-1100.0 * per, 1030.0 * per);
        let mut k = estimate as i32;
        while !at_most(schema, x, k) {
            k += 1;
        }
        while at_most(schema, x, k - 1) {
            k -= 1;
        }
        k
    }

    fn mantissas(schema: i8) -> &'static [u64] {
        let v: Vec<u64> = if schema > 0 {
            let n = 1u32 << schema;
            (1..n)
                .map(|k| 2f64.powf(f64::from(k) / f64::from(n)).to_bits() & ((1 << 52) - 1))
                .collect()
        } else {
            Vec::new()
        };
        Vec::leak(v)
    }

    /// A layout as the generator makes it.
    fn layout(schema: i8, unit: f64, zero_threshold: f64) -> NativeDesc {
        let zero_threshold_units = (zero_threshold / unit).floor() as u64;
        let m = mantissas(schema);
        let key = |v: u64| crate::schema::native_key(schema, m, v as f64 * unit);
        let min_key = key(zero_threshold_units.saturating_add(1));
        let keys = (i64::from(key(u64::MAX)) - i64::from(min_key) + 1).max(1) as u32;
        NativeDesc {
            schema,
            zero_threshold,
            zero_threshold_units,
            min_key,
            keys,
            max_buckets: 0,
            unit,
            mantissas: m,
        }
    }

    /// The reference cell: the zero bucket up to the threshold, else `1 +` the key's offset,
    /// which must be inside the layout.
    fn reference_cell(n: &NativeDesc, v: u64) -> usize {
        if v <= n.zero_threshold_units {
            return 0;
        }
        let offset = reference_key(n.schema, v as f64 * n.unit) - n.min_key;
        assert!(
            offset >= 0 && (offset as u32) < n.keys,
            "{v} outside the layout"
        );
        1 + offset as usize
    }

    fn search(b: &[u64], v: u64) -> usize {
        b.partition_point(|&x| x < v)
    }

    /// Values on and next to every edge of `n`: each bucket boundary (in storage units), the
    /// zero threshold, powers of two, the ends of the range, and a spread in between.
    fn edges(n: &NativeDesc) -> Vec<u64> {
        let mut values = vec![0, 1, 2, 3, u64::MAX, u64::MAX - 1];
        let near = |v: u64, out: &mut Vec<u64>| {
            out.extend([v.saturating_sub(1), v, v.saturating_add(1)]);
        };
        near(n.zero_threshold_units, &mut values);
        near(n.zero_threshold_units.saturating_add(1), &mut values);
        for e in 0..64 {
            near(1u64 << e, &mut values);
        }
        for k in n.min_key - 1..=n.min_key + n.keys as i32 {
            let x = bound(n.schema, k) / n.unit;
            if (0.0..1.9e19).contains(&x) {
                let v = x as u64;
                for d in 0..3 {
                    values.push(v.saturating_add(d));
                    values.push(v.saturating_sub(d));
                }
            }
        }
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..2000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            values.push(state >> (state % 64));
        }
        values
    }

    #[test]
    fn table_cells_equal_the_reference_on_every_edge() {
        let mut layouts = Vec::new();
        for schema in -4i8..=8 {
            // The widest layouts are slow to check in a debug build; one unit each suffices.
            let units: &[f64] = if schema >= 6 {
                &[1e-9]
            } else {
                &[1e-9, 1e-6, 1.0]
            };
            for &unit in units {
                for zero in [0.0, 2.938735877055719e-39, 1e-6, 0.25, 3.0] {
                    layouts.push(layout(schema, unit, zero));
                }
            }
        }
        for n in &layouts {
            let table = NativeTable::build(n);
            let mut values = edges(n);
            // The table's own change points and their neighbours.
            for &b in table.bounds.iter().filter(|&&b| b != u64::MAX) {
                values.extend([b, b.saturating_add(1), b.saturating_sub(1)]);
            }
            for v in values {
                let expected = reference_cell(n, v);
                assert_eq!(
                    table.cell(v, search),
                    expected,
                    "schema {} unit {} zero {}: v {v}",
                    n.schema,
                    n.unit,
                    n.zero_threshold
                );
                assert_eq!(n.cell_of(v, search), expected, "cell_of, v {v}");
            }
        }
    }

    #[test]
    fn native_key_equals_the_reference_on_boundaries_subnormals_and_specials() {
        for schema in -4i8..=8 {
            let m = mantissas(schema);
            let key = |x: f64| crate::schema::native_key(schema, m, x);
            let per = 1i32 << schema.max(0);
            // Exactly on a boundary (upper-inclusive) and one ulp either side.
            for k in (-1074 * per..1024 * per).step_by((per as usize / 4).max(1) * 7) {
                let b = bound(schema, k);
                if b == 0.0 || !b.is_finite() {
                    continue;
                }
                for x in [
                    b,
                    f64::from_bits(b.to_bits() - 1),
                    f64::from_bits(b.to_bits() + 1),
                ] {
                    if x > 0.0 && x.is_finite() {
                        assert_eq!(key(x), reference_key(schema, x), "schema {schema}, x {x:e}");
                    }
                }
                assert_eq!(key(b), reference_key(schema, b));
            }
            // Subnormals, the smallest normal, the largest finite value.
            for x in [
                f64::from_bits(1),
                f64::from_bits(2),
                f64::from_bits(3),
                f64::from_bits(0x000F_FFFF_FFFF_FFFF),
                f64::from_bits(0x0008_0000_0000_0000),
                f64::MIN_POSITIVE,
                f64::MAX,
            ] {
                assert_eq!(key(x), reference_key(schema, x), "schema {schema}, x {x:e}");
                // Negative values have the key of their magnitude.
                assert_eq!(key(-x), key(x));
            }
            assert_eq!(key(f64::INFINITY), reference_key(schema, f64::INFINITY));
            assert_eq!(key(f64::NEG_INFINITY), key(f64::INFINITY));
            assert_eq!(key(f64::NAN), key(f64::INFINITY));
            assert_eq!(key(0.0), i32::MIN);
            assert_eq!(key(-0.0), i32::MIN);
        }
    }
}
