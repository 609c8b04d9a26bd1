"""bc-connector: the Azure Functions app. Wiring only; every trigger lives in connector/blueprints."""
import azure.functions as func

from connector.blueprints import health, items, sales_orders, signin, webhooks

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

app.register_functions(health.bp)
app.register_functions(sales_orders.bp)
app.register_functions(items.bp)
app.register_functions(signin.bp)
app.register_functions(webhooks.bp)
