"""Services of the public API: its settings, the per-client rate limit and the OpenAPI description."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tenderpool.config import ConfigError
from tenderpool.notices.models import ApiUsage
from tenderpool.notices.search import CONTRACT_TYPES, MAX_TEXT, MAX_VALUES, SORTS, SOURCES, STATUSES

WINDOW = dt.timedelta(minutes=1)
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# Cursors are opaque tokens made by the search service; anything longer is not one of ours.
MAX_CURSOR_LENGTH = 1000


@dataclass(frozen=True)
class ApiSettings:
    enabled: bool
    rate_limit_per_minute: int


def api_settings(raw: Mapping[str, Any]) -> ApiSettings:
    """Validate the ``[api]`` table of the settings; raise ConfigError naming the bad setting."""
    table = raw.get("api") or {}
    enabled = table.get("enabled", True)
    limit = table.get("rate_limit_per_minute", 120)
    errors = []
    if not isinstance(enabled, bool):
        errors.append(f"api.enabled must be true or false (got {enabled!r})")
    # bool is an int in Python: "true" must not pass for a limit of 1.
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        errors.append(f"api.rate_limit_per_minute must be a positive whole number (got {limit!r})")
    if errors:
        raise ConfigError("invalid settings:\n  - " + "\n  - ".join(errors))
    return ApiSettings(enabled=bool(enabled), rate_limit_per_minute=int(limit))


# --------------------------------------------------------------------------- rate limit


@dataclass(frozen=True)
class RateLimitState:
    """Where a client stands in the current one-minute window, this request included."""

    limit: int
    count: int
    window_end: dt.datetime

    @property
    def allowed(self) -> bool:
        return self.count <= self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)

    def retry_after(self, now: dt.datetime) -> int:
        """Whole seconds until the window ends (at least 1, as Retry-After needs a positive delay)."""
        return max(1, math.ceil((self.window_end - now).total_seconds()))


def window_start_of(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(second=0, microsecond=0)


def count_request(session: Session, client: str, *, now: dt.datetime, limit: int) -> RateLimitState:
    """Count one request of ``client`` in the current minute and say whether it is within ``limit``.

    The count is one atomic upsert (INSERT … ON CONFLICT DO UPDATE … RETURNING) so that
    concurrent requests in several worker processes never lose an increment nor collide
    on the primary key. Only flushes; the caller commits at once so other workers see it.
    """
    client = client[:80]
    start = window_start_of(now)
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        pg = postgresql.insert(ApiUsage).values(client=client, window_start=start, count=1)
        stmt: Any = pg.on_conflict_do_update(
            index_elements=[ApiUsage.client, ApiUsage.window_start], set_={"count": ApiUsage.count + 1}
        )
    elif dialect == "sqlite":
        lite = sqlite.insert(ApiUsage).values(client=client, window_start=start, count=1)
        stmt = lite.on_conflict_do_update(
            index_elements=[ApiUsage.client, ApiUsage.window_start], set_={"count": ApiUsage.count + 1}
        )
    else:  # pragma: no cover - the settings only accept SQLite and PostgreSQL
        raise RuntimeError(f"no rate-limit upsert for {dialect}")
    count = int(session.execute(stmt.returning(ApiUsage.count)).scalar_one())
    if count == 1:
        # First request of this client in a new window: its older windows are over. Deleting
        # only this client's rows keeps concurrent requests of different clients from
        # contending for the same rows.
        session.execute(delete(ApiUsage).where(ApiUsage.client == client, ApiUsage.window_start < start))
    return RateLimitState(limit=limit, count=count, window_end=start + WINDOW)


def prune_api_usage(session: Session, *, now: dt.datetime) -> int:
    """Delete finished windows of every client (those who never came back); for a scheduled job."""
    result: Any = session.execute(delete(ApiUsage).where(ApiUsage.window_start < window_start_of(now)))
    return int(result.rowcount or 0)


# --------------------------------------------------------------------------- OpenAPI description


def _array(items: dict[str, Any], description: str) -> dict[str, Any]:
    return {"type": "array", "items": items, "maxItems": MAX_VALUES, "description": description}


def _param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "required": False, "description": description}
    param["schema"] = schema
    if schema.get("type") == "array":
        # Repeat the parameter (?dep=77&dep=91) or separate the values with commas (?dep=77,91).
        param |= {"style": "form", "explode": True}
    return param


_CPV = {"type": "string", "pattern": r"^\d{8}(-\d)?$", "examples": ["45210000", "45210000-2"]}
_DATE = {"type": "string", "format": "date"}
_FLAG = {"type": "string", "enum": ["1", "0", "true", "false", "on", "off", "oui", "non"]}

# Every parameter of tenderpool.notices.search.SearchQuery, with its meaning (tests check none is missing).
SEARCH_PARAMETERS: list[dict[str, Any]] = [
    _param("q", {"type": "string", "maxLength": MAX_TEXT},
           "Mots cherchés dans le titre, la description, l'acheteur et les lots ; une expression entre "
           'guillemets doubles ("maîtrise d\'œuvre") ; accents et majuscules ignorés, formes du français '
           "ramenées à leur racine."),
    _param("cpv", _array(_CPV, "Codes CPV"),
           "Codes CPV (8 chiffres, chiffre de contrôle accepté). Hiérarchique : 45000000 trouve 45210000."),
    _param("dep", _array({"type": "string", "pattern": "^(\\d{2}|2[AB]|9[78]\\d)$"}, "Départements"),
           "Départements d'exécution (« 77 », « 2A », « 971 »)."),
    _param("nuts", _array({"type": "string", "pattern": "^FR[0-9A-Z]{0,3}$"}, "Codes NUTS"),
           "Codes NUTS français, par préfixe : FR10 trouve FR102."),
    _param("type", _array({"type": "string", "enum": list(CONTRACT_TYPES)}, "Types de marché"),
           "Type de marché : works (travaux), supplies (fournitures), services."),
    _param("min", {"type": "number", "minimum": 0, "maximum": 1e12},
           "Valeur estimée minimale, en euros (virgule ou point décimal)."),
    _param("max", {"type": "number", "minimum": 0, "maximum": 1e12},
           "Valeur estimée maximale, en euros ; ne peut être inférieure à min."),
    _param("closing", {"type": "integer", "minimum": 1, "maximum": 365},
           "Date limite dans les N prochains jours."),
    _param("deadline_from", _DATE, "Date limite à partir de ce jour (jour de Paris, AAAA-MM-JJ)."),
    _param("deadline_to", _DATE,
           "Date limite jusqu'à ce jour inclus (jour de Paris, AAAA-MM-JJ) ; pas avant deadline_from."),
    _param("status", _array({"type": "string", "enum": list(STATUSES)}, "États"),
           "État : open (ouvert), closed (date limite passée), awarded (attribué), cancelled (annulé). "
           "Par défaut : tous."),
    _param("source", _array({"type": "string", "enum": list(SOURCES)}, "Sources"),
           "Source d'au moins une publication de l'avis ; manual : avis saisi par l'équipe des CCI."),
    _param("featured", _FLAG,
           "1 : seulement les avis mis en avant par l'équipe des CCI."),
    _param("tag", _array({"type": "string", "maxLength": 60}, "Étiquettes"),
           "Étiquettes de secteur posées par l'équipe des CCI (« BTP », « Nettoyage »)."),
    _param("firm", _FLAG,
           "Avis correspondant à l'entreprise de l'utilisateur connecté. Sans effet dans l'API publique, "
           "qui n'a pas d'utilisateur."),
    _param("sort", {"type": "string", "enum": list(SORTS)},
           "Ordre : relevance (pertinence, le défaut avec q), deadline (date limite la plus proche), "
           "published (publication la plus récente, le défaut sans q)."),
]  # fmt: skip

PAGINATION_PARAMETERS: list[dict[str, Any]] = [
    _param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
           f"Nombre d'avis par page (1 à {MAX_LIMIT})."),
    _param("cursor", {"type": "string", "maxLength": MAX_CURSOR_LENGTH},
           "Curseur opaque de la page suivante : la valeur next_cursor de la page précédente, avec les "
           "mêmes filtres. Absent : la première page."),
]  # fmt: skip


def _nullable(type_: str, **extra: Any) -> dict[str, Any]:
    return {"type": [type_, "null"], **extra}


_STRING_LIST = {"type": "array", "items": {"type": "string"}}

NOTICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Un avis (les clés de l'export, documentées dans le README, « Export keys »).",
    "required": ["id", "title", "status", "lots", "awards", "publications", "changes"],
    "properties": {
        "id": {"type": "integer", "description": "Identifiant de l'avis."},
        "title": {"type": "string"},
        "buyer_name": _nullable("string", description="Acheteur."),
        "buyer_siret": _nullable("string", description="SIRET de l'acheteur (14 chiffres)."),
        "contract_type": {"enum": [*CONTRACT_TYPES, None], "description": "Type de marché."},
        "procedure_type": _nullable(
            "string", description="open, restricted, adapted, negotiated… ou le libellé de la source."
        ),
        "published_at": _nullable("string", format="date", description="Première publication de l'appel."),
        "deadline_at": _nullable(
            "string", format="date-time", description="Date limite, ISO 8601 avec décalage, heure de Paris."
        ),
        "departments": {**_STRING_LIST, "examples": [["77"]]},
        "nuts": {**_STRING_LIST, "examples": [["FR102"]]},
        "cpv": {**_STRING_LIST, "description": "Codes CPV à 8 chiffres, le principal en premier."},
        "estimated_value": _nullable("number", description="Valeur estimée."),
        "currency": _nullable("string", examples=["EUR"]),
        "status": {"type": "string", "enum": list(STATUSES)},
        "lots": {"type": "array", "items": {"$ref": "#/components/schemas/Lot"}},
        "awards": {"type": "array", "items": {"$ref": "#/components/schemas/Award"}},
        "url": _nullable("string", format="uri", description="La publication chez sa source."),
        "publications": {"type": "array", "items": {"$ref": "#/components/schemas/Publication"}},
        "changes": {"type": "array", "items": {"$ref": "#/components/schemas/Change"}},
    },
}

_HEADERS = {
    "ETag": {"$ref": "#/components/headers/ETag"},
    "Cache-Control": {"$ref": "#/components/headers/Cache-Control"},
    "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
    "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
}


def _ok(description: str, schema_ref: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": _HEADERS,
        "content": {"application/json": {"schema": {"$ref": schema_ref}}},
    }


_COMMON_ERRORS = {
    "304": {"$ref": "#/components/responses/NotModified"},
    "429": {"$ref": "#/components/responses/TooManyRequests"},
    "500": {"$ref": "#/components/responses/ServerError"},
}


def openapi_document(*, server_url: str, rate_limit_per_minute: int) -> dict[str, Any]:
    """The OpenAPI 3.1 description of /api/v1, served as /api/v1/openapi.json."""
    error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "TenderPool — API publique",
            "version": "1.0.0",
            "description": (
                "Les avis de marchés publics du fonds commun de la CCI Seine-et-Marne et de la CCI "
                "Essonne, en lecture seule. Les avis écartés par l'équipe des CCI et les avis fusionnés "
                f"n'apparaissent jamais. Limite : {rate_limit_per_minute} requêtes par minute et par "
                "adresse IP ; au-delà, 429 avec Retry-After. Chaque réponse 200 porte un ETag : renvoyez-le "
                "dans If-None-Match pour obtenir 304 sans corps."
            ),
        },
        "servers": [{"url": server_url}],
        "paths": {
            "/notices": {
                "get": {
                    "operationId": "listNotices",
                    "summary": "Chercher des avis",
                    "description": (
                        "Les mêmes filtres que la recherche du site. Pagination par curseur : suivez "
                        "links.next (ou passez next_cursor dans cursor) jusqu'à ce qu'il soit null. Les "
                        "paramètres inconnus sont ignorés."
                    ),
                    "parameters": [*SEARCH_PARAMETERS, *PAGINATION_PARAMETERS],
                    "responses": {
                        "200": _ok("Une page d'avis.", "#/components/schemas/NoticePage"),
                        "400": {"$ref": "#/components/responses/BadParameter"},
                        **_COMMON_ERRORS,
                    },
                }
            },
            "/notices/{id}": {
                "get": {
                    "operationId": "getNotice",
                    "summary": "Un avis",
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
                    ],
                    "responses": {
                        "200": _ok("L'avis.", "#/components/schemas/Notice"),
                        "301": {
                            "description": (
                                "L'avis a été fusionné dans un autre : Location donne l'adresse du survivant."
                            ),
                            "headers": {"Location": {"schema": {"type": "string"}}},
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Merged"}}
                            },
                        },
                        "404": {"$ref": "#/components/responses/NotFound"},
                        **_COMMON_ERRORS,
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "getOpenApi",
                    "summary": "Cette description (OpenAPI 3.1)",
                    "responses": {
                        "200": {
                            "description": "Le document OpenAPI.",
                            "headers": _HEADERS,
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **_COMMON_ERRORS,
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Notice": NOTICE_SCHEMA,
                "Lot": {
                    "type": "object",
                    "properties": {
                        "number": {"type": "string"},
                        "title": _nullable("string"),
                        "cpv": _STRING_LIST,
                        "estimated_value": _nullable("number"),
                    },
                },
                "Award": {
                    "type": "object",
                    "description": "Un lot attribué (les lots sans suite n'y figurent pas).",
                    "properties": {
                        "lot": _nullable("string"),
                        "winner_name": _nullable("string"),
                        "winner_siret": _nullable("string"),
                        "amount": _nullable("number"),
                    },
                },
                "Publication": {
                    "type": "object",
                    "properties": {
                        "source": {"type": "string", "enum": [s for s in SOURCES if s != "manual"]},
                        "source_ref": {"type": "string"},
                        "nature": {
                            "enum": [
                                "initial",
                                "corrigendum",
                                "award",
                                "cancellation",
                                "prior_information",
                                "other",
                                None,
                            ]
                        },
                        "published_at": _nullable("string", format="date"),
                    },
                },
                "Change": {
                    "type": "object",
                    "description": "Modification apportée par une publication ultérieure (rectificatif…).",
                    "properties": {
                        "field": {"type": "string"},
                        "old": _nullable("string"),
                        "new": _nullable("string"),
                        "source_ref": _nullable("string"),
                    },
                },
                "NoticePage": {
                    "type": "object",
                    "required": ["items", "total", "next_cursor", "links"],
                    "properties": {
                        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Notice"}},
                        "total": {"type": "integer", "description": "Nombre d'avis trouvés, toutes pages."},
                        "next_cursor": _nullable("string", description="null sur la dernière page."),
                        "links": {
                            "type": "object",
                            "properties": {
                                "next": _nullable("string", format="uri", description="Page suivante.")
                            },
                        },
                    },
                },
                "Merged": {
                    "type": "object",
                    "properties": {"id": {"type": "integer"}, "merged_into_id": {"type": "integer"}},
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {
                                    "type": "string",
                                    "enum": [
                                        "invalid_parameter",
                                        "not_found",
                                        "method_not_allowed",
                                        "rate_limited",
                                        "server_error",
                                        "error",
                                    ],
                                },
                                "message": {"type": "string", "description": "Explication, en français."},
                                "param": {"type": "string", "description": "Le paramètre refusé (400)."},
                            },
                        }
                    },
                },
            },
            "headers": {
                "ETag": {
                    "description": "Empreinte du corps ; à renvoyer dans If-None-Match.",
                    "schema": {"type": "string"},
                },
                "Cache-Control": {"description": "public, max-age=60", "schema": {"type": "string"}},
                "X-RateLimit-Limit": {
                    "description": "Requêtes permises par minute.",
                    "schema": {"type": "integer"},
                },
                "X-RateLimit-Remaining": {
                    "description": "Requêtes restantes dans la minute en cours.",
                    "schema": {"type": "integer"},
                },
                "Retry-After": {
                    "description": "Secondes à attendre avant de réessayer.",
                    "schema": {"type": "integer"},
                },
            },
            "responses": {
                "NotModified": {
                    "description": "If-None-Match correspond à l'ETag actuel : pas de corps.",
                    "headers": _HEADERS,
                },
                "BadParameter": {
                    "description": "Un paramètre est invalide ; error.param le nomme.",
                    "content": error_content,
                },
                "NotFound": {"description": "Avis inconnu ou écarté.", "content": error_content},
                "TooManyRequests": {
                    "description": "Limite de requêtes dépassée.",
                    "headers": {
                        "Retry-After": {"$ref": "#/components/headers/Retry-After"},
                        "X-RateLimit-Limit": {"$ref": "#/components/headers/X-RateLimit-Limit"},
                        "X-RateLimit-Remaining": {"$ref": "#/components/headers/X-RateLimit-Remaining"},
                    },
                    "content": error_content,
                },
                "ServerError": {"description": "Erreur inattendue du serveur.", "content": error_content},
            },
        },
    }
