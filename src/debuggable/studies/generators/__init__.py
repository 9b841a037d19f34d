"""One task generator per study: each reads a finished run and returns a :class:`Study`
whose images it wrote under the study's directory.

Every generator has the signature ``generate(source, directory, settings, *, name,
seed, replication, checks) -> Study``.
"""

from debuggable.studies.generators.description import description_study
from debuggable.studies.generators.failure_review import failure_review_study
from debuggable.studies.generators.misclassification import misclassification_study
from debuggable.studies.generators.simulation import simulation_study
from debuggable.studies.generators.spurious import spurious_study

#: study kind -> generator
GENERATORS = {
    "simulation": simulation_study,
    "spurious": spurious_study,
    "misclassification": misclassification_study,
    "description": description_study,
    "failure_review": failure_review_study,
}

__all__ = ["GENERATORS", "description_study", "failure_review_study", "misclassification_study",
           "simulation_study", "spurious_study"]
