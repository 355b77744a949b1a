DROP TABLE route_destinations;
DROP TABLE routes;
