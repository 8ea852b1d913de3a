"""torchrun, for Debian 12's PyTorch 1.13 under Python 3.11.

    /usr/bin/python3 scripts/torchrun.py --nproc_per_node=2 --no_python build/fsa run ...

Debian's /usr/bin/torchrun stops before starting any process with
"AttributeError: 'NoneType' object has no attribute 'get'": its
Std.from_str looks the redirect setting up by iterating the Std flag, and
Python 3.11 no longer yields the flag's zero and combined members (NONE, ALL)
when iterating, so the default setting "0" is not found. PyTorch 2.0 fixed
it. This script mends that one function and runs torchrun's own main with the
same arguments; elsewhere (PyTorch >= 2.0) use torchrun itself.
"""

import re
import sys

from torch.distributed.elastic.multiprocessing import api


def from_str(cls, vm):
    """Std.from_str as PyTorch 2.0 has it: "0".."3" or "rank:value,..."."""
    if re.match(api._VALUE_REGEX, vm):
        return cls(int(vm))
    if re.match(api._MAPPING_REGEX, vm):
        return {int(rank): cls(int(value)) for rank, value in (m.split(":") for m in vm.split(","))}
    raise ValueError(f"{vm} does not match: <{api._VALUE_REGEX}> or <{api._MAPPING_REGEX}>")


api.Std.from_str = classmethod(from_str)

from torch.distributed.run import main  # noqa: E402  (after the mend)

if __name__ == "__main__":
    sys.exit(main())
