# One image for every role: the command picks it (ENTRYPOINT is `signalcast`):
#   docker run IMAGE worker -Q predict -c 2 | scheduler | bot | metrics --host 0.0.0.0 | db upgrade
#   docker run IMAGE demo                    # the whole pipeline in one container, no services
# docker-compose.yml runs the production stack from it (docs/production.md).
FROM python:3.11-slim

# OMP/OPENBLAS/MKL: one native thread per worker process: two 2-thread fits on 2 cores ran
# 5-10x slower than 1-thread fits (docs/reliability.md). Raise it only for a train worker with -c 1
# on a host of its own.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1

# libgomp1: the OpenMP runtime LightGBM's wheel links against (not in the slim image).
# The service user owns /data only: the code in site-packages stays read-only to it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 signalcast \
    && useradd --system --uid 10001 --gid signalcast --home-dir /data --shell /usr/sbin/nologin \
        signalcast \
    && mkdir -p /data /etc/signalcast \
    && chown signalcast:signalcast /data

WORKDIR /build

# Dependency layer: depends on pyproject.toml only, so a code change reuses it. The runtime
# dependencies, the `live` extra (ccxt) and the model-family extras named in FAMILY_EXTRAS are
# read from pyproject.toml and installed first. FAMILY_EXTRAS: comma-separated, e.g.
# "xgboost"; empty (the default) builds a lean image whose workers serve the core families
# (lightgbm, hmm, river, random_forest, lorentzian, ensembles of them): xgboost's wheel alone adds
# ~700 MB with its CUDA library. `docker build --build-arg FAMILY_EXTRAS=xgboost .`
ARG FAMILY_EXTRAS=""
COPY pyproject.toml ./
RUN python -c "import tomllib, sys; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extras = [r for e in sys.argv[1].split(',') if e for r in p['optional-dependencies'][e]]; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['live'] + extras))" \
    "$FAMILY_EXTRAS" > requirements.txt \
    && pip install -r requirements.txt

# Source layer: the package itself, without its dependencies (installed above).
COPY README.md ./
COPY signalcast ./signalcast
RUN pip install --no-deps . \
    && rm -rf /build

USER signalcast
WORKDIR /data

# Database and Redis answer (compose adds --worker NAME / --scheduler per role).
HEALTHCHECK --interval=30s --timeout=15s --start-period=30s --retries=3 \
    CMD ["signalcast", "health"]

ENTRYPOINT ["signalcast"]
CMD ["--help"]
