"""The first schema: studies, tasks, annotators, assignments, answers.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("study", sa.String(64), sa.ForeignKey("studies.name"), nullable=False),
        sa.Column("condition", sa.String(100), nullable=False),
        sa.Column("attention_check", sa.Boolean(), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
    )
    op.create_index("ix_tasks_study", "tasks", ["study"])
    op.create_table(
        "annotators",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("study", sa.String(64), sa.ForeignKey("studies.name"), nullable=False),
    )
    op.create_index("ix_annotators_study", "annotators", ["study"])
    op.create_table(
        "assignments",
        sa.Column("annotator", sa.String(200), sa.ForeignKey("annotators.id"), primary_key=True),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("task", sa.String(200), sa.ForeignKey("tasks.id"), nullable=False),
        sa.UniqueConstraint("annotator", "task", name="uq_assignments_annotator_task"),
        sa.UniqueConstraint("annotator", "position", "task", name="uq_assignments_annotator_position_task"),
    )
    op.create_index("ix_assignments_task", "assignments", ["task"])
    op.create_table(
        "answers",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("annotator", sa.String(200), nullable=False),
        sa.Column("task", sa.String(200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("answer", sa.JSON(), nullable=False),
        sa.Column("elapsed_ms", sa.Integer(), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("annotator", "task", name="uq_answers_annotator_task"),
        sa.ForeignKeyConstraint(["annotator", "position", "task"],
                                ["assignments.annotator", "assignments.position", "assignments.task"],
                                name="fk_answers_assignment"),
    )
    op.create_index("ix_answers_task", "answers", ["task"])


def downgrade() -> None:
    op.drop_table("answers")
    op.drop_table("assignments")
    op.drop_table("annotators")
    op.drop_table("tasks")
    op.drop_table("studies")
