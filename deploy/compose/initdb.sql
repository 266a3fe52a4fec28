-- Each service owns its database (the first, duewise_invoice, is POSTGRES_DB). Runs once, on
-- an empty data volume, through the postgres image's /docker-entrypoint-initdb.d.
CREATE DATABASE duewise_dunning OWNER duewise;
CREATE DATABASE duewise_risk OWNER duewise;
CREATE DATABASE duewise_notify OWNER duewise;
