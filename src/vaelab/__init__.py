"""vaelab: variational autoencoders on MNIST with PyTorch Lightning and Hydra."""

import warnings

__version__ = "0.1.0"

# pytorch-lightning 2.6 calls a torch pytree API that torch 2.14 deprecates, once per step: noise only.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
# On a machine with SLURM installed, Lightning says at every start that `srun` exists: noise before a one-line error.
warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system")
# bf16-mixed (precision=auto on a bf16 CPU or GPU): the summary sizes the parameters as float32, which they are.
warnings.filterwarnings("ignore", message=r"Precision bf16-mixed is not supported by the model summary")
