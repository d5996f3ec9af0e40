module github.com/amqprpc/amqprpc

go 1.26.0

require (
	github.com/dave/jennifer v1.7.1
	github.com/google/uuid v1.6.0
	github.com/rabbitmq/amqp091-go v1.16.0
	go.uber.org/goleak v1.3.0
	golang.org/x/tools v0.52.0
)

require (
	golang.org/x/mod v0.42.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
)
