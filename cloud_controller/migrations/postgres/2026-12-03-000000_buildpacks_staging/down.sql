ALTER TABLE droplets DROP COLUMN droplet_hash;
DROP TABLE buildpacks;
