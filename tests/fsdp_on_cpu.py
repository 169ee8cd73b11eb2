"""w2s's command line under accelerate's FSDP2, on CPU: tests/test_fsdp.py launches it as
`accelerate launch --config_file tests/accelerate_fsdp_cpu2.yaml tests/fsdp_on_cpu.py run SPEC`.

Accelerate (1.16) applies an FSDP config only to process groups of an accelerator type (MULTI_GPU,
MULTI_XPU, ...): on a CPU process group it trains plain DDP over gloo and says nothing. torch's
`fully_shard` itself runs on CPU with gloo, so this shim labels the CPU group as MULTI_GPU before
w2s builds its Accelerator. From there on the code is accelerate's and torch's FSDP2 as on GPUs:
the model's parameters are sharded DTensors, gradients are reduce-scattered, and
`get_state_dict` gathers the full weights.
"""

import sys

from accelerate import PartialState
from accelerate.utils import DistributedType

from w2s.training.launch import process_state

if __name__ == "__main__":
    state: PartialState = process_state()  # the launch's gloo group, as w2s forms it
    assert state.distributed_type == DistributedType.MULTI_CPU, state.distributed_type
    state.distributed_type = DistributedType.MULTI_GPU

    from w2s.cli import main

    sys.exit(main())
