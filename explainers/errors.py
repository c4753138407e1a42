"""FraudLens's own error types: each message says what is wrong and how to fix it."""


class FraudLensError(Exception):
    """Base class for every error a user can act on."""


class SchemaError(FraudLensError):
    """A feature schema is malformed or does not match what it describes."""


class ManifestError(FraudLensError):
    """A model manifest is missing a field or holds a bad value."""


class ChecksumError(FraudLensError):
    """An artifact's bytes do not match the SHA-256 recorded in its manifest."""


class ArtifactFormatError(FraudLensError):
    """A model artifact is not in the format its file name and manifest declare."""


class RegistryError(FraudLensError):
    """A model is not registered, or the registry cannot be read."""


class RegistryUnavailableError(RegistryError):
    """The registry could not be reached within the time allowed."""


class WarehouseError(FraudLensError):
    """The warehouse is missing, locked, or of the wrong schema."""


class ValidationError(FraudLensError):
    """Input data is missing columns, has mistyped ones, or does not satisfy the schema."""


class AuditError(FraudLensError):
    """The audit trail could not be written, read or verified; the audited action must not
    happen."""


class ExportError(FraudLensError):
    """An export could not be written to its destination."""


class AccessDeniedError(FraudLensError):
    """The signed-in principal's role may not do this."""


class EngineError(FraudLensError):
    """The batch engine (a Ray cluster) is missing, unreachable or failed the job."""
