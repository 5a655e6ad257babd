"""The kernel manager of the grading sandbox (``gdgrade.sandbox`` explains the sandbox).

nbgrader's configuration names it ``gdgrade.sandbox.SandboxedKernelManager``; it is defined
here, apart from the launcher, which must start fast.
"""

import os
import sys

from jupyter_client import AsyncKernelManager
from traitlets import List, Unicode

from gdgrade.sandbox import SANDBOX_VARIABLE


class SandboxedKernelManager(AsyncKernelManager):
    """The kernel manager nbgrader's ``Execute`` uses (``c.Execute.kernel_manager_class``):
    every kernel starts through ``python -m gdgrade.sandbox`` with ``hidden_paths`` hidden,
    unless ``GDGRADE_SANDBOX=off`` is set."""

    hidden_paths = List(Unicode(), help="files and folders the kernel must not see").tag(
        config=True)
    launcher = List(Unicode(), default_value=[sys.executable, "-m", "gdgrade.sandbox"]).tag(
        config=True)

    def format_kernel_cmd(self, extra_arguments=None) -> list:
        command = super().format_kernel_cmd(extra_arguments)
        if os.environ.get(SANDBOX_VARIABLE, "").lower() == "off":
            return command
        hidden = [word for path in self.hidden_paths for word in ("--hide", path)]
        return [*self.launcher, *hidden, "--", *command]
