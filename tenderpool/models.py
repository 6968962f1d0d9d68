"""Imports every domain's models so that the metadata is complete (Alembic, mappers)."""

from tenderpool.accounts import models as accounts_models
from tenderpool.consortia import models as consortia_models
from tenderpool.db import Base
from tenderpool.digests import models as digests_models
from tenderpool.dossiers import models as dossiers_models
from tenderpool.firms import models as firms_models
from tenderpool.notices import models as notices_models
from tenderpool.ops import models as ops_models

__all__ = [
    "Base",
    "accounts_models",
    "consortia_models",
    "digests_models",
    "dossiers_models",
    "firms_models",
    "notices_models",
    "ops_models",
]
