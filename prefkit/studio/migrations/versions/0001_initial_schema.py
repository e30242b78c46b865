"""The initial studio schema (prefkit.studio.schema at version 1).

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('annotator',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('handle', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("role IN ('admin', 'annotator')", name=op.f('ck_annotator_role')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_annotator')),
    sa.UniqueConstraint('handle', name=op.f('uq_annotator_handle')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_annotator_token_hash'))
    )
    op.create_table('checkpoint',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('uri', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkpoint')),
    sa.UniqueConstraint('name', name=op.f('uq_checkpoint_name'))
    )
    op.create_table('project',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('guideline_md', sa.Text(), nullable=False),
    sa.Column('allow_tie', sa.Boolean(), nullable=False),
    sa.Column('allow_both_bad', sa.Boolean(), nullable=False),
    sa.Column('critique', sa.String(length=16), nullable=False),
    sa.Column('overlap_k', sa.Integer(), nullable=False),
    sa.Column('selection', sa.String(length=16), nullable=False),
    sa.Column('refit_every', sa.Integer(), nullable=False),
    sa.Column('ensemble_kind', sa.String(length=8), nullable=False),
    sa.Column('ensemble_size', sa.Integer(), nullable=False),
    sa.Column('render', sa.String(length=16), nullable=False),
    sa.Column('lock_minutes', sa.Integer(), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("critique IN ('off', 'optional', 'required')", name=op.f('ck_project_critique')),
    sa.CheckConstraint("render IN ('markdown', 'text')", name=op.f('ck_project_render')),
    sa.CheckConstraint("selection IN ('random', 'bald', 'variance')", name=op.f('ck_project_selection')),
    sa.CheckConstraint('overlap_k >= 1', name=op.f('ck_project_overlap_k')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_project')),
    sa.UniqueConstraint('name', name=op.f('uq_project_name'))
    )
    op.create_table('prompt',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_prompt_project_id_project')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prompt')),
    sa.UniqueConstraint('project_id', 'content_hash', name=op.f('uq_prompt_project_id_content_hash'))
    )
    with op.batch_alter_table('prompt', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_prompt_project_id'), ['project_id'], unique=False)

    op.create_table('rating_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('n_boot', sa.Integer(), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('tie_policy', sa.String(length=32), nullable=False),
    sa.Column('n_labels', sa.Integer(), nullable=False),
    sa.Column('code_version', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_rating_run_project_id_project')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rating_run'))
    )
    with op.batch_alter_table('rating_run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rating_run_project_id'), ['project_id'], unique=False)

    op.create_table('selection_round',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('params_json', sa.Text(), nullable=False),
    sa.Column('model_version', sa.String(length=64), nullable=False),
    sa.Column('n_labels', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_selection_round_project_id_project')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_selection_round'))
    )
    with op.batch_alter_table('selection_round', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_selection_round_project_id'), ['project_id'], unique=False)

    op.create_table('rating',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('checkpoint_id', sa.Integer(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('ci_lo', sa.Float(), nullable=False),
    sa.Column('ci_hi', sa.Float(), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('n_battles', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['checkpoint_id'], ['checkpoint.id'], name=op.f('fk_rating_checkpoint_id_checkpoint')),
    sa.ForeignKeyConstraint(['run_id'], ['rating_run.id'], name=op.f('fk_rating_run_id_rating_run')),
    sa.PrimaryKeyConstraint('run_id', 'checkpoint_id', name=op.f('pk_rating'))
    )
    op.create_table('response',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('prompt_id', sa.Integer(), nullable=False),
    sa.Column('checkpoint_id', sa.Integer(), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('gen_params_json', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['checkpoint_id'], ['checkpoint.id'], name=op.f('fk_response_checkpoint_id_checkpoint')),
    sa.ForeignKeyConstraint(['prompt_id'], ['prompt.id'], name=op.f('fk_response_prompt_id_prompt')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_response'))
    )
    with op.batch_alter_table('response', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_response_prompt_id'), ['prompt_id'], unique=False)

    op.create_table('pair',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('prompt_id', sa.Integer(), nullable=False),
    sa.Column('resp_a_id', sa.Integer(), nullable=False),
    sa.Column('resp_b_id', sa.Integer(), nullable=False),
    sa.Column('origin', sa.String(length=16), nullable=False),
    sa.Column('source', sa.Text(), nullable=True),
    sa.Column('selection_round_id', sa.Integer(), nullable=True),
    sa.Column('score', sa.Float(), nullable=True),
    sa.Column('random_key', sa.Float(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("status IN ('open', 'closed')", name=op.f('ck_pair_status')),
    sa.CheckConstraint('resp_a_id < resp_b_id', name=op.f('ck_pair_canonical_order')),
    sa.ForeignKeyConstraint(['project_id'], ['project.id'], name=op.f('fk_pair_project_id_project')),
    sa.ForeignKeyConstraint(['prompt_id'], ['prompt.id'], name=op.f('fk_pair_prompt_id_prompt')),
    sa.ForeignKeyConstraint(['resp_a_id'], ['response.id'], name=op.f('fk_pair_resp_a_id_response')),
    sa.ForeignKeyConstraint(['resp_b_id'], ['response.id'], name=op.f('fk_pair_resp_b_id_response')),
    sa.ForeignKeyConstraint(['selection_round_id'], ['selection_round.id'], name=op.f('fk_pair_selection_round_id_selection_round')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pair')),
    sa.UniqueConstraint('project_id', 'resp_a_id', 'resp_b_id', name=op.f('uq_pair_project_id_resp_a_id_resp_b_id'))
    )
    with op.batch_alter_table('pair', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pair_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_pair_status'), ['status'], unique=False)

    op.create_table('assignment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('pair_id', sa.Integer(), nullable=False),
    sa.Column('annotator_id', sa.Integer(), nullable=False),
    sa.Column('left_is_a', sa.Boolean(), nullable=False),
    sa.Column('issued_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.CheckConstraint("status IN ('issued', 'done', 'expired')", name=op.f('ck_assignment_status')),
    sa.ForeignKeyConstraint(['annotator_id'], ['annotator.id'], name=op.f('fk_assignment_annotator_id_annotator')),
    sa.ForeignKeyConstraint(['pair_id'], ['pair.id'], name=op.f('fk_assignment_pair_id_pair')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_assignment')),
    sa.UniqueConstraint('pair_id', 'annotator_id', name=op.f('uq_assignment_pair_id_annotator_id'))
    )
    with op.batch_alter_table('assignment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_assignment_annotator_id'), ['annotator_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_assignment_pair_id'), ['pair_id'], unique=False)

    op.create_table('label',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('assignment_id', sa.Integer(), nullable=False),
    sa.Column('verdict', sa.String(length=16), nullable=False),
    sa.Column('critique', sa.Text(), nullable=True),
    sa.Column('confidence', sa.Integer(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.Column('client_nonce', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("verdict IN ('a', 'b', 'tie', 'both_bad')", name=op.f('ck_label_verdict')),
    sa.CheckConstraint('confidence IS NULL OR (confidence >= 1 AND confidence <= 5)', name=op.f('ck_label_confidence')),
    sa.ForeignKeyConstraint(['assignment_id'], ['assignment.id'], name=op.f('fk_label_assignment_id_assignment')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_label')),
    sa.UniqueConstraint('assignment_id', name=op.f('uq_label_assignment_id')),
    sa.UniqueConstraint('client_nonce', name=op.f('uq_label_client_nonce'))
    )


def downgrade() -> None:
    op.drop_table('label')
    with op.batch_alter_table('assignment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_assignment_pair_id'))
        batch_op.drop_index(batch_op.f('ix_assignment_annotator_id'))

    op.drop_table('assignment')
    with op.batch_alter_table('pair', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pair_status'))
        batch_op.drop_index(batch_op.f('ix_pair_project_id'))

    op.drop_table('pair')
    with op.batch_alter_table('response', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_response_prompt_id'))

    op.drop_table('response')
    op.drop_table('rating')
    with op.batch_alter_table('selection_round', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_selection_round_project_id'))

    op.drop_table('selection_round')
    with op.batch_alter_table('rating_run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rating_run_project_id'))

    op.drop_table('rating_run')
    with op.batch_alter_table('prompt', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_prompt_project_id'))

    op.drop_table('prompt')
    op.drop_table('project')
    op.drop_table('checkpoint')
    op.drop_table('annotator')
