"""Project-wide test settings."""

import torch

# Tiny tensors run far faster on one thread than on two contending ones (measured: a small
# forward + backward took 3–8 ms on one thread and 100–220 ms on two on the 2-core machine).
torch.set_num_threads(1)
