//! What split layers exchange: activations gathered, partial deltas scattered, whole
//! tensors for model files, and top-K lists merged.

use super::*;
use crate::backend::top_k_order;

impl<B: Backend> Network<B> {
    /// The whole tensor of parameter `p` of which `local` holds this rank's columns: the
    /// ranks' columns are gathered a band of rows at a time, so that no device holds more
    /// than a band of every rank's columns at once.
    pub(super) fn whole(&self, p: usize, local: &B::Buffer) -> Result<Vec<f32>> {
        let spec = &self.topology.parameters[p];
        let len = spec.len();
        if !self.group.splits_layers() {
            let mut values = self.backend.download(local)?;
            values.truncate(len);
            return Ok(values);
        }
        let split = Split::new(spec.cols, self.group.size());
        let (mine, longest) = (self.columns[p].len(), split.longest());
        let band = ((1usize << 24) / (split.parts() * longest).max(1)).clamp(1, spec.rows.max(1));
        let mut part = self.backend.zeros(band * longest)?;
        let mut parts = self.backend.zeros(split.parts() * band * longest)?;
        let mut values = vec![0.0f32; len];
        for first in (0..spec.rows).step_by(band) {
            let rows = band.min(spec.rows - first);
            let from = Strided {
                offset: first * mine,
                stride: mine,
            };
            let to = Strided {
                offset: 0,
                stride: longest,
            };
            self.backend
                .copy_matrix(Shape::new(rows, mine), local, from, &mut part, to, false)?;
            self.group.communicator().all_gather(
                &self.backend,
                &part,
                rows * longest,
                &mut parts,
            )?;
            let gathered = self.backend.download(&parts)?;
            for (q, range) in split.ranges().enumerate() {
                for r in 0..rows {
                    let source = &gathered[(q * rows + r) * longest..][..range.len()];
                    values[(first + r) * spec.cols + range.start..][..range.len()]
                        .copy_from_slice(source);
                }
            }
        }
        Ok(values)
    }

    /// All-gathers this rank's `rows x units` activations `mine` of split layer `l` into the
    /// whole `rows x width` matrix.
    pub(super) fn gather_layer(
        &mut self,
        l: usize,
        rows: usize,
        mine: &B::Buffer,
        whole: &mut B::Buffer,
    ) -> Result<()> {
        let width = self.topology.layers[l].width;
        let split = Split::new(width, self.group.size());
        let longest = split.longest();
        let exchange = self.exchange.as_mut().expect("reserved for split layers");
        let units = self.units[l].len();
        let padded = Strided {
            offset: 0,
            stride: longest,
        };
        let dense = Strided {
            offset: 0,
            stride: units,
        };
        self.backend.copy_matrix(
            Shape::new(rows, units),
            mine,
            dense,
            &mut exchange.part,
            padded,
            false,
        )?;
        self.group.communicator().all_gather(
            &self.backend,
            &exchange.part,
            rows * longest,
            &mut exchange.parts,
        )?;
        for (q, range) in split.ranges().enumerate() {
            let from = Strided {
                offset: q * rows * longest,
                stride: longest,
            };
            let to = Strided {
                offset: range.start,
                stride: width,
            };
            self.backend.copy_matrix(
                Shape::new(rows, range.len()),
                &exchange.parts,
                from,
                whole,
                to,
                false,
            )?;
        }
        Ok(())
    }

    /// Reduce-scatters the whole-width partial deltas in `exchange.partial` (every rank's
    /// share of `dE/d(source)`) and adds this rank's columns of their sum to split layer
    /// `l`'s delta.
    pub(super) fn scatter_delta(&mut self, l: usize, rows: usize) -> Result<()> {
        let width = self.topology.layers[l].width;
        let split = Split::new(width, self.group.size());
        let longest = split.longest();
        let exchange = self.exchange.as_mut().expect("reserved for split layers");
        for (q, range) in split.ranges().enumerate() {
            let from = Strided {
                offset: range.start,
                stride: width,
            };
            let to = Strided {
                offset: q * rows * longest,
                stride: longest,
            };
            self.backend.copy_matrix(
                Shape::new(rows, range.len()),
                &exchange.partial,
                from,
                &mut exchange.parts,
                to,
                false,
            )?;
        }
        self.group.communicator().reduce_scatter(
            &self.backend,
            &exchange.parts,
            rows * longest,
            &mut exchange.part,
        )?;
        let units = self.units[l].len();
        let delta = &mut self.buffers[l].as_mut().expect("forward ran").delta;
        let padded = Strided {
            offset: 0,
            stride: longest,
        };
        let dense = Strided {
            offset: 0,
            stride: units,
        };
        self.backend.copy_matrix(
            Shape::new(rows, units),
            &exchange.part,
            padded,
            delta,
            dense,
            true,
        )
    }

    /// Queues the `k` best units of output layer `l` for each of the `rows` samples of the
    /// last inference pass, leaving out the columns of each row in `exclude` (of the whole
    /// layer); [`Network::read_top_k`] reads them. The pass left the layer at its products:
    /// the backend applies the bias and activation as it selects.
    pub fn top_k(
        &mut self,
        l: usize,
        rows: usize,
        k: usize,
        exclude: Option<&SparseBatch<B>>,
    ) -> Result<B::TopK> {
        let plan = &self.topology.layers[l];
        let units = self.units[l].clone();
        let buffer = self.buffers[l].as_mut().ok_or_else(|| {
            Error::Options(format!(
                "layer '{}' has no products: run an inference pass first",
                plan.name()
            ))
        })?;
        self.backend.top_k_activated(
            plan.definition.activation,
            Shape::new(rows, units.len()),
            plan.bias.map(|b| &self.parameters[b].value),
            &mut buffer.z,
            plan.slope.map(|s| &self.parameters[s].value),
            &mut buffer.activated,
            k,
            exclude,
            units.start,
        )
    }

    /// Appends the columns (of the whole layer) and scores of a [`Network::top_k`], `k` per
    /// row, to `columns` and `scores`; a split layer's ranks each found the best of their
    /// units, merged here.
    pub fn append_top_k(
        &self,
        top: B::TopK,
        k: usize,
        columns: &mut Vec<u32>,
        scores: &mut Vec<f32>,
    ) -> Result<()> {
        if !self.group.splits_layers() {
            return self.backend.append_top_k(top, columns, scores);
        }
        let (mine, my_scores) = self.backend.read_top_k(top)?;
        let all = self
            .group
            .all_gather_top_k(&self.backend, &mine, &my_scores, mine.len())?;
        let (merged, merged_scores) = merge_top_k(&all, k);
        columns.extend(merged);
        scores.extend(merged_scores);
        Ok(())
    }
}

/// Merges every rank's `rows x k` best into the `k` best of each row, in
/// [`top_k_order`].
fn merge_top_k(all: &[(Vec<u32>, Vec<f32>)], k: usize) -> (Vec<u32>, Vec<f32>) {
    let rows = all
        .first()
        .map_or(0, |(columns, _)| columns.len() / k.max(1));
    let mut columns = Vec::with_capacity(rows * k);
    let mut scores = Vec::with_capacity(rows * k);
    let mut candidates: Vec<(f32, u32)> = Vec::with_capacity(all.len() * k);
    for r in 0..rows {
        candidates.clear();
        for (column, score) in all {
            candidates.extend((r * k..(r + 1) * k).map(|i| (score[i], column[i])));
        }
        candidates.sort_by(top_k_order);
        for &(score, column) in &candidates[..k] {
            columns.push(column);
            scores.push(score);
        }
    }
    (columns, scores)
}
