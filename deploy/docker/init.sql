-- The same database, roles and schemas as the local stack (deploy/local/stack.py): one per service.
CREATE DATABASE mentoring;
\connect mentoring
CREATE ROLE enrollment LOGIN PASSWORD 'enrollment_dev';
CREATE ROLE matching LOGIN PASSWORD 'matching_dev';
CREATE ROLE sessions LOGIN PASSWORD 'sessions_dev';
CREATE ROLE feedback LOGIN PASSWORD 'feedback_dev';
CREATE ROLE metrics LOGIN PASSWORD 'metrics_dev';
CREATE SCHEMA enrollment AUTHORIZATION enrollment;
CREATE SCHEMA matching AUTHORIZATION matching;
CREATE SCHEMA sessions AUTHORIZATION sessions;
CREATE SCHEMA feedback AUTHORIZATION feedback;
CREATE SCHEMA metrics AUTHORIZATION metrics;
ALTER ROLE enrollment SET search_path = enrollment;
ALTER ROLE matching SET search_path = matching;
ALTER ROLE sessions SET search_path = sessions;
ALTER ROLE feedback SET search_path = feedback;
ALTER ROLE metrics SET search_path = metrics;
