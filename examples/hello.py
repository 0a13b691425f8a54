# The smallest pysprinter function: `pysprinter run examples/hello.py -a 5`
@requirements({})
def hello(input_value: int, greeting: str = "hello"):
    print(f"{greeting}, computing {input_value} squared")
    return {"input": input_value, "squared": input_value * input_value}
