//! Synchronous data-parallel training: every optimiser step's batch is cut into equal shares,
//! each share's gradients are computed on its own, and the step applies their mean.
//!
//! Under MPI (`mpirun -n N nas train ...`, built with the `mpi` feature) rank r computes share r
//! of N and the gradients are summed over the ranks with one `MPI_Allreduce` per step (packed
//! into one host buffer); in one process `--shares N` computes the N shares in turn. Both are
//! the same computation: every rank loads the same global batch (same seed, same augmentation)
//! and samples the same subnets (the seeded sandwich rule), so `mpirun -n N` trains the weights
//! one process with `--shares N` trains, up to the order of float sums.
//!
//! BatchNorm is per share (each share is normalised with its own batch statistics, as in
//! synchronous data-parallel training without SyncBN): the running statistics are those of
//! rank 0's shares, which no subnet uses (every evaluation recalibrates them). Rank 0 alone
//! writes checkpoints and metrics; a checkpoint holds nothing that depends on N, so a run can be
//! resumed with another N.

use super::TrainError;
use crate::data::Batch;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use std::sync::Arc;

/// This process's place in an MPI job.
pub struct World {
    /// This process's rank.
    pub rank: usize,
    /// Processes in the job.
    pub size: usize,
    #[cfg(feature = "mpi")]
    universe: mpi::environment::Universe,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "World {{ rank: {}, size: {} }}", self.rank, self.size)
    }
}

/// Whether an MPI launcher started this process: mpirun of Open MPI (`OMPI_COMM_WORLD_SIZE`),
/// PMI of MPICH or Slurm (`PMI_SIZE`), PMIx direct launch such as `srun --mpi=pmix`
/// (`PMIX_RANK`; the size then comes from `SLURM_NTASKS` when set). Returns the job size the
/// environment announces (`None`: not announced) or `None` outside a launcher.
fn launcher() -> Option<Option<usize>> {
    let var = |v: &str| std::env::var(v).ok().and_then(|s| s.trim().parse::<usize>().ok());
    if let Some(n) = var("OMPI_COMM_WORLD_SIZE").or_else(|| var("PMI_SIZE")) {
        return Some(Some(n));
    }
    std::env::var("PMIX_RANK").is_ok().then(|| var("SLURM_NTASKS"))
}

impl World {
    /// Join the MPI job when an MPI launcher started this process; `None` when none did. A
    /// build without the `mpi` feature started as several ranks is refused, since each rank
    /// would train alone and all would write the same folder.
    pub fn from_launcher() -> Result<Option<Arc<World>>, TrainError> {
        let Some(size) = launcher() else { return Ok(None) };
        Self::join(size)
    }

    #[cfg(feature = "mpi")]
    fn join(_announced: Option<usize>) -> Result<Option<Arc<World>>, TrainError> {
        use mpi::traits::Communicator;
        let universe = mpi::initialize().ok_or_else(|| TrainError::Config("MPI was already initialised in this process".into()))?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        Ok(Some(Arc::new(World { rank, size, universe })))
    }

    #[cfg(not(feature = "mpi"))]
    fn join(size: Option<usize>) -> Result<Option<Arc<World>>, TrainError> {
        if size != Some(1) {
            let ranks = size.map_or_else(|| "an unannounced number of".to_string(), |n| n.to_string());
            return Err(TrainError::Config(format!(
                "started by an MPI launcher as {ranks} ranks, but this nas was built without the `mpi` feature, so every \
                 rank would train alone into the same folder: rebuild with `cargo build --release --features mpi` (needs an \
                 MPI library, e.g. Debian's libopenmpi-dev)"
            )));
        }
        Ok(None)
    }

    /// Sum `buf` element-wise over the ranks, in place.
    #[cfg(feature = "mpi")]
    fn sum<T: mpi::datatype::Equivalence + Clone>(&self, buf: &mut [T]) {
        use mpi::collective::SystemOperation;
        use mpi::traits::CommunicatorCollectives;
        let send = buf.to_vec();
        self.universe.world().all_reduce_into(&send[..], buf, SystemOperation::sum());
    }

    #[cfg(not(feature = "mpi"))]
    fn sum<T>(&self, _buf: &mut [T]) {
        unreachable!("a World exists only with the mpi feature")
    }
}

/// How each step's batch is shared out.
#[derive(Debug, Clone)]
pub struct Parallel {
    /// Shares computed in turn by this process (1: the whole batch at once). Must be 1 under MPI.
    pub shares: usize,
    /// The MPI job, when there is one: rank r computes share r of `size`.
    pub world: Option<Arc<World>>,
}

impl Default for Parallel {
    fn default() -> Self {
        Parallel { shares: 1, world: None }
    }
}

impl Parallel {
    /// Shares per global batch, over all ranks.
    pub fn total(&self) -> usize {
        self.world.as_ref().map_or(self.shares, |w| w.size)
    }

    /// The shares this process computes.
    pub fn local(&self) -> std::ops::Range<usize> {
        match &self.world {
            Some(w) => w.rank..w.rank + 1,
            None => 0..self.shares,
        }
    }

    /// Rank 0, or a single process: the one that writes files and prints.
    pub fn is_root(&self) -> bool {
        self.world.as_ref().is_none_or(|w| w.rank == 0)
    }

    /// Refuse splits that leave a share with fewer than 2 images (its BatchNorm statistics
    /// would be degenerate) or mix --shares with MPI ranks.
    pub fn check(&self, batch_size: usize) -> Result<(), TrainError> {
        if self.shares == 0 || self.shares > 4096 {
            return Err(TrainError::Config(format!("--shares {}: expected 1 to 4096", self.shares)));
        }
        if let Some(w) = &self.world
            && self.shares > 1
        {
            return Err(TrainError::Config(format!(
                "--shares {} with {} MPI ranks: under MPI each rank computes one share; drop --shares",
                self.shares, w.size
            )));
        }
        let total = self.total();
        if batch_size / total < 2 {
            return Err(TrainError::Config(format!(
                "batch_size {batch_size} over {total} shares leaves fewer than 2 images per share (BatchNorm needs a batch): \
                 raise train.batch_size or use fewer shares"
            )));
        }
        Ok(())
    }

    /// The mean over all shares of the gradients summed in `grads` (this process's shares),
    /// summed over the ranks first. With one share in all it returns `grads` untouched.
    pub fn mean_gradients<M: Module>(&self, mut grads: GradientsParams, model: &M) -> GradientsParams {
        let total = self.total();
        if total == 1 {
            return grads;
        }
        let mut pack = Pack { grads: &mut grads, buf: Vec::new(), layout: Vec::new() };
        model.visit(&mut pack);
        let Pack { mut buf, layout, .. } = pack;
        if let Some(w) = &self.world {
            w.sum(&mut buf);
        }
        let scale = 1.0 / total as f32;
        buf.iter_mut().for_each(|v| *v *= scale);
        model.visit(&mut Unpack { grads: &mut grads, buf: &buf, layout: &layout, next: 0, offset: 0 });
        grads
    }

    /// The mean over all shares of per-share scalars summed over this process's shares.
    pub fn mean_scalars<const N: usize>(&self, mut sums: [f64; N]) -> [f64; N] {
        if let Some(w) = &self.world {
            w.sum(&mut sums);
        }
        sums.map(|s| s / self.total() as f64)
    }
}

/// Share `k` of `n` of `batch`: its rows `k*len/n .. (k+1)*len/n`.
pub fn share(batch: &Batch, k: usize, n: usize) -> Batch {
    let (lo, hi) = (k * batch.n / n, (k + 1) * batch.n / n);
    let per = batch.c * batch.h * batch.w;
    Batch {
        images: batch.images[lo * per..hi * per].to_vec(),
        labels: batch.labels[lo..hi].to_vec(),
        indices: batch.indices[lo..hi].to_vec(),
        n: hi - lo,
        c: batch.c,
        h: batch.h,
        w: batch.w,
    }
}

/// Moves every gradient into one host buffer, in the model's visiting order (the same on every
/// rank), recording where each went.
struct Pack<'a> {
    grads: &'a mut GradientsParams,
    buf: Vec<f32>,
    layout: Vec<(ParamId, Vec<usize>, Device)>,
}

impl ModuleVisitor for Pack<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            let (dims, device) = (g.dims().to_vec(), g.device());
            let data = g.into_data().convert::<f32>();
            self.buf.extend_from_slice(data.as_slice::<f32>().expect("f32 after convert"));
            self.layout.push((param.id, dims, device));
        }
    }
}

/// Puts the (reduced) buffer back as gradients, in the same order.
struct Unpack<'a> {
    grads: &'a mut GradientsParams,
    buf: &'a [f32],
    layout: &'a [(ParamId, Vec<usize>, Device)],
    next: usize,
    offset: usize,
}

impl ModuleVisitor for Unpack<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some((id, dims, device)) = self.layout.get(self.next) else { return };
        if *id != param.id {
            return;
        }
        let len: usize = dims.iter().product();
        let data = TensorData::new(self.buf[self.offset..self.offset + len].to_vec(), dims.clone());
        self.grads.register::<D>(param.id, Tensor::from_data(data, device));
        self.next += 1;
        self.offset += len;
    }
}

/// Every trainable parameter of `model`, flattened in visiting order: for comparing the weights
/// of two runs.
pub fn trainable_values<M: Module>(model: &M) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if param.is_require_grad() {
                let data = param.val().into_data().convert::<f32>();
                self.0.extend_from_slice(data.as_slice::<f32>().expect("f32 after convert"));
            }
        }
    }
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize) -> Batch {
        Batch {
            images: (0..n * 2 * 2).map(|v| v as f32).collect(),
            labels: (0..n as u32).collect(),
            indices: (0..n).collect(),
            n,
            c: 1,
            h: 2,
            w: 2,
        }
    }

    #[test]
    fn shares_cover_the_batch_in_order() {
        let b = batch(10);
        for n in 1..=5 {
            let parts: Vec<Batch> = (0..n).map(|k| share(&b, k, n)).collect();
            assert_eq!(parts.iter().map(|p| p.n).sum::<usize>(), 10);
            assert_eq!(parts.iter().flat_map(|p| p.labels.clone()).collect::<Vec<_>>(), b.labels);
            assert_eq!(parts.iter().flat_map(|p| p.images.clone()).collect::<Vec<_>>(), b.images);
        }
    }

    #[test]
    fn splits_are_checked() {
        let p = |shares| Parallel { shares, world: None };
        assert!(p(2).check(64).is_ok());
        assert!(p(0).check(64).unwrap_err().to_string().contains("--shares 0"));
        assert!(p(40).check(64).unwrap_err().to_string().contains("fewer than 2 images per share"));
        assert_eq!((p(3).total(), p(3).local(), p(3).is_root()), (3, 0..3, true));
    }
}
