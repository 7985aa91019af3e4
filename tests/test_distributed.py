"""lzn.distributed degrades to the identity without a process group."""

import torch

from lzn import distributed


def test_single_process_identity():
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    assert distributed.gather_with_grad(x) is x
    assert distributed.gather(x) is x
    assert distributed.all_reduce_sum(x) is x
    assert distributed.all_true(True) and not distributed.all_true(False)
    assert distributed.global_offset(7) == 0
