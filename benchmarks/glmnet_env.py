"""The virtual environment that runs glmnet for the benchmarks, created on first use.

python-glmnet 2.2.1 is a source distribution: it builds glmnet's Fortran with
``numpy.distutils``, so it needs numpy < 2 (the project uses numpy 2), an old
setuptools, and a Fortran compiler (Debian: ``apt-get install gfortran``). It lives in
``benchmarks/.venvs/glmnet`` (ignored by git) and talks to the benchmark only through
``.npz`` files (``glmnet_runner.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ENV_DIR = os.path.join(HERE, ".venvs", "glmnet")
GLMNET_VERSION = "2.2.1"
BUILD_REQUIREMENTS = ["numpy<2", "setuptools<65", "wheel", "scikit-learn<1.6", "joblib"]


def env_python() -> str:
    return os.path.join(ENV_DIR, "bin", "python")


def _works(python: str) -> bool:
    if not os.path.exists(python):
        return False
    probe = subprocess.run([python, "-c", "import glmnet; print(glmnet.__version__)"], capture_output=True, text=True)
    return probe.returncode == 0 and probe.stdout.strip() == GLMNET_VERSION


def ensure_glmnet_env(log=lambda msg: print(msg, file=sys.stderr, flush=True)) -> str:
    """Return the interpreter of a working glmnet environment, building it if needed.

    Raises ``SystemExit`` with what to install when the build cannot work here.
    """
    python = env_python()
    if _works(python):
        return python
    if shutil.which("gfortran") is None:
        raise SystemExit("--solvers glmnet: building python-glmnet needs a Fortran compiler; install one "
                         "(Debian: apt-get install gfortran) and run again")
    log(f"   creating glmnet's environment in {ENV_DIR} (once; about a minute)")
    if os.path.exists(ENV_DIR):
        shutil.rmtree(ENV_DIR)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", ENV_DIR], check=True)
    pip = [python, "-m", "pip", "-q", "--disable-pip-version-check", "install"]
    subprocess.run(pip + BUILD_REQUIREMENTS, check=True)
    # numpy.distutils must come from the numpy installed above, not an isolated build env
    subprocess.run(pip + ["--no-build-isolation", f"glmnet=={GLMNET_VERSION}"], check=True)
    if not _works(python):
        raise SystemExit(f"--solvers glmnet: {ENV_DIR} was built but `import glmnet` fails there")
    return python


if __name__ == "__main__":
    print(ensure_glmnet_env())
