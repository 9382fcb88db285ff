"""Build hook: ship ``st_eval_harness_hook.pth`` so a plain ``lm_eval`` finds st-eval's tasks.

Everything else is in pyproject.toml. The .pth file goes to the root of site-packages, for
regular installs (build_py) and for editable ones (editable_wheel).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = Path(__file__).parent / "st_eval_harness_hook.pth"


class build_py_with_pth(build_py):
    def run(self):
        super().run()
        self.copy_file(str(PTH), str(Path(self.build_lib) / PTH.name))


commands = {"build_py": build_py_with_pth}

try:
    from setuptools.command.editable_wheel import editable_wheel

    class editable_wheel_with_pth(editable_wheel):
        def _run_build_commands(self, dist_name, unpacked_wheel, *args, **kwargs):
            result = super()._run_build_commands(dist_name, unpacked_wheel, *args, **kwargs)
            shutil.copy(PTH, Path(unpacked_wheel) / PTH.name)
            return result

    commands["editable_wheel"] = editable_wheel_with_pth
except ImportError:  # setuptools without PEP 660 support: legacy develop installs skip the hook
    pass

setup(cmdclass=commands)
