//! How a width (a layer's units, a batch's samples) is cut into one contiguous part per rank.

use std::borrow::Cow;
use std::ops::Range;

/// An even split of `width` into `parts` contiguous ranges, the first `width % parts` one
/// longer, so that any width works with any number of ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    width: usize,
    parts: usize,
}

impl Split {
    /// Splits `width` into `parts` (at least one).
    pub fn new(width: usize, parts: usize) -> Self {
        Split {
            width,
            parts: parts.max(1),
        }
    }

    /// The whole width.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of parts.
    pub fn parts(&self) -> usize {
        self.parts
    }

    /// Part `part`'s range.
    pub fn range(&self, part: usize) -> Range<usize> {
        let (base, longer) = (self.width / self.parts, self.width % self.parts);
        let start = part * base + part.min(longer);
        start..start + base + usize::from(part < longer)
    }

    /// The length of the longest part, to which collectives pad every part.
    pub fn longest(&self) -> usize {
        self.width.div_ceil(self.parts)
    }

    /// Every part's range, in order.
    pub fn ranges(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        (0..self.parts).map(|p| self.range(p))
    }
}

/// Columns `columns` of the row-major `rows x cols` matrix `values`: `values` itself, not a
/// copy, when that is all of them (one rank's model uploads without copying).
pub fn slice_columns(values: &[f32], cols: usize, columns: Range<usize>) -> Cow<'_, [f32]> {
    if columns == (0..cols) {
        return Cow::Borrowed(values);
    }
    values
        .chunks_exact(cols.max(1))
        .flat_map(|row| &row[columns.clone()])
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uneven_widths_split_into_contiguous_parts() {
        let split = Split::new(10, 4);
        let ranges: Vec<_> = split.ranges().collect();
        assert_eq!(ranges, vec![0..3, 3..6, 6..8, 8..10]);
        assert_eq!(split.longest(), 3);
        assert_eq!(
            Split::new(2, 3).ranges().collect::<Vec<_>>(),
            vec![0..1, 1..2, 2..2]
        );
        assert_eq!(
            slice_columns(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3, 1..3),
            vec![2.0, 3.0, 5.0, 6.0]
        );
    }
}
