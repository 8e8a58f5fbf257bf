# One image for every CivicPulse service; docker-compose.yml picks the service
# with `command` (python -m services.<name>). Configured by CIVICPULSE_* variables.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 civicpulse \
    && useradd --system --uid 10001 --gid civicpulse --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin civicpulse

WORKDIR /src

# Dependencies first, read from pyproject.toml (runtime only, no dev extras):
# this layer is rebuilt only when pyproject.toml changes, not on every code edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the code, installed as the `civicpulse` distribution (packages shared,
# services, civicpulse with their SQL migrations and YAML data).
COPY shared ./shared
COPY services ./services
COPY civicpulse ./civicpulse
RUN pip install . \
    && rm -rf /src

# Run from an empty directory so the installed package is what gets imported.
WORKDIR /app
USER civicpulse

CMD ["python", "-m", "services.intake"]
