DROP TABLE service_credential_bindings;
DROP TABLE service_instances;
DROP TABLE service_plan_visibilities;
DROP TABLE service_plans;
DROP TABLE service_offerings;
DROP TABLE service_brokers;
