-- The wiki's first table: applied once by nixmox (native-migration mode),
-- as the database's owner, recorded in nixmox_migrations.
CREATE TABLE pages (
  id serial PRIMARY KEY,
  title text NOT NULL,
  body text NOT NULL DEFAULT ''
);
INSERT INTO pages (title) VALUES ('Welcome to the lab');
