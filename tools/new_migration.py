# usage: python tools/new_migration.py "message" 0002   (autogenerates a migration from the models)
import sys

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine

cfg = Config()
cfg.set_main_option("script_location", "src/terakoya/storage/migrations")
eng = create_engine("sqlite:////tmp/terakoya-gen.db")
with eng.begin() as conn:
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")
    command.revision(cfg, message=sys.argv[1], autogenerate=True, rev_id=sys.argv[2])
