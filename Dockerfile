# One image for every service; the command picks which (see docker-compose.yml and the Helm chart).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY contracts ./contracts
COPY runtime ./runtime
COPY services ./services
COPY deploy/__init__.py ./deploy/__init__.py
COPY bench ./bench
RUN pip install . && useradd --system --uid 10001 mentoring
USER 10001
EXPOSE 8080
CMD ["uvicorn", "services.enrollment.app:app", "--host", "0.0.0.0", "--port", "8080", "--no-access-log"]
