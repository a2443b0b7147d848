FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api api
COPY worker worker
COPY connectors connectors
RUN pip install --no-cache-dir .
USER nobody
EXPOSE 8000 5555
CMD ["sourcecheck", "api", "--host", "0.0.0.0"]
