# pysprinter run examples/kwargs.py -a 5 -arg1 this --arg2 that
@requirements({})
def my_function(input_value: str, arg1: str = None, arg2: str = None):
    return [input_value, arg1, arg2]
