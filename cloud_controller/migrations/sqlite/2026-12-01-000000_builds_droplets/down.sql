DROP TABLE droplets;
DROP TABLE builds;
